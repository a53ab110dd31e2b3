"""Reading and checking requests to the fake Meshy server.

The Bearer key, the JSON body, and the parameter validation Meshy applies to create requests (prompt
length, enum choices, polycount range, target formats, image URLs). Rejections are raised as
``ApiError`` and answered as ``{"message": ...}`` with the given status.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.meshy_api.tasks import DEFAULT_FORMATS

AI_MODELS = {"meshy-4", "meshy-5", "meshy-6", "latest"}
FORMATS = ("glb", "obj", "fbx", "stl", "usdz", "3mf")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"message": message}, status=status, headers=headers)


def api_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() if auth.startswith("Bearer ") else None


async def json_body(request: web.Request) -> Any:
    """The decoded JSON body, the raw text when it is not JSON, or None (aiohttp caches the bytes)."""
    if not request.body_exists:
        return None
    raw = await request.read()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", errors="replace")


def target_formats(body: dict[str, Any]) -> tuple[str, ...]:
    formats = body.get("target_formats")
    if formats is None:
        return DEFAULT_FORMATS
    if not isinstance(formats, list) or not formats or any(f not in FORMATS for f in formats):
        raise ApiError(400, f"Invalid target_formats: must be a list of {', '.join(FORMATS)}.")
    return tuple(dict.fromkeys(formats))


def validate_image(body: dict[str, Any]) -> None:
    image_url = body.get("image_url")
    if not isinstance(image_url, str) or not image_url.startswith(("http://", "https://", "data:")):
        raise ApiError(400, "Missing or invalid parameter: image_url.")


def validate_preview(body: dict[str, Any]) -> None:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError(400, "Missing required parameter: prompt.")
    if len(prompt) > 600:
        raise ApiError(400, "Invalid prompt: the prompt must be at most 600 characters.")
    choices = {
        "ai_model": AI_MODELS,
        "model_type": {"standard", "lowpoly"},
        "topology": {"triangle", "quad"},
        "pose_mode": {"a-pose", "t-pose", ""},
        "art_style": {"realistic", "sculpture"},
    }
    for name, allowed in choices.items():
        if name in body and body[name] not in allowed:
            raise ApiError(400, f"Invalid {name}: {body[name]!r}.")
    polycount = body.get("target_polycount")
    if polycount is not None and (
        not isinstance(polycount, int) or isinstance(polycount, bool) or not 100 <= polycount <= 300_000
    ):
        raise ApiError(400, "Invalid target_polycount: must be an integer between 100 and 300000.")
    if "should_remesh" in body and not isinstance(body["should_remesh"], bool):
        raise ApiError(400, "Invalid should_remesh: must be a boolean.")


def refine_preview_id(body: dict[str, Any]) -> str:
    """The ``preview_task_id`` a refine request names (whether that task exists is the server's check)."""
    preview_id = body.get("preview_task_id")
    if not isinstance(preview_id, str) or not preview_id:
        raise ApiError(400, "Missing required parameter: preview_task_id.")
    return preview_id


def validate_refine_options(body: dict[str, Any]) -> None:
    texture_prompt = body.get("texture_prompt", "")
    if not isinstance(texture_prompt, str) or len(texture_prompt) > 600:
        raise ApiError(400, "Invalid texture_prompt: must be a string of at most 600 characters.")
    if "enable_pbr" in body and not isinstance(body["enable_pbr"], bool):
        raise ApiError(400, "Invalid enable_pbr: must be a boolean.")
    if "ai_model" in body and body["ai_model"] not in AI_MODELS:
        raise ApiError(400, f"Invalid ai_model: {body['ai_model']!r}.")
