"""Task creation on the fake Meshy server (``POST`` to the text-to-3D and image-to-3D APIs).

Checks run in Meshy's order: the body and its mode, the mode's parameters (a refine needs the caller's own
SUCCEEDED preview), the target formats, then the account: concurrent and pending task limits and credits.
The test-mode key gets the fixed sample task instead and spends nothing. A created task takes its timings
from the server's config and, when one was scheduled, a failure; ``202 {"result": id}`` names it.
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.meshy_api.requests import (
    ApiError,
    api_key,
    json_body,
    refine_preview_id,
    target_formats,
    validate_image,
    validate_preview,
    validate_refine_options,
)
from tests.fakes.meshy_api.tasks import (
    IMAGE_TO_3D,
    SAMPLE_IMAGE_ID,
    SAMPLE_PREVIEW_ID,
    SAMPLE_REFINE_ID,
    TEST_MODE_KEY,
    TEXT_TO_3D,
    FakeTask,
    TaskState,
    task_state,
)

if TYPE_CHECKING:
    from tests.fakes.meshy_api.server import FakeMeshy


def _refine_source(meshy: FakeMeshy, body: dict[str, Any], key: str) -> FakeTask:
    preview_id = refine_preview_id(body)
    preview = meshy.tasks.get(preview_id)
    if preview is None or preview.api_key != key or preview.type != "text-to-3d-preview":
        raise ApiError(404, f"Task not found: {preview_id}.")
    if task_state(preview, time.monotonic()).status != "SUCCEEDED":
        raise ApiError(400, "The preview task has not SUCCEEDED yet; refine needs a finished preview.")
    validate_refine_options(body)
    return preview


def _active(meshy: FakeMeshy, key: str, now: float) -> list[TaskState]:
    states = [task_state(task, now) for task in meshy.tasks.values() if task.api_key == key]
    return [state for state in states if not state.terminal]


async def create_task(meshy: FakeMeshy, request: web.Request) -> web.StreamResponse:
    key = api_key(request) or ""
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid request body: expected a JSON object.")
    config = meshy.config
    api = IMAGE_TO_3D if request.path.startswith(IMAGE_TO_3D) else TEXT_TO_3D
    if api == IMAGE_TO_3D:
        validate_image(body)
        mode: str = "image"
        kind, cost = "image-to-3d", config.preview_cost
        prompt, texture_prompt, duration = "", "", config.preview_s + config.refine_s
        enable_pbr = bool(body.get("enable_pbr", False))
    else:
        mode = str(body.get("mode"))
        if mode == "preview":
            validate_preview(body)
            kind, cost, duration = "text-to-3d-preview", config.preview_cost, config.preview_s
            prompt, texture_prompt, enable_pbr = body["prompt"], "", False
        elif mode == "refine":
            preview = _refine_source(meshy, body, key)
            kind, cost, duration = "text-to-3d-refine", config.refine_cost, config.refine_s
            prompt, texture_prompt = preview.prompt, body.get("texture_prompt", "")
            enable_pbr = bool(body.get("enable_pbr", False))
        else:
            raise ApiError(400, "Invalid mode: must be 'preview' or 'refine'.")
    formats = target_formats(body)
    if key == TEST_MODE_KEY:
        sample_id = {"preview": SAMPLE_PREVIEW_ID, "refine": SAMPLE_REFINE_ID}.get(mode, SAMPLE_IMAGE_ID)
        meshy.add_sample(sample_id, kind, body)
        return web.json_response({"result": sample_id}, status=202)
    now = time.monotonic()
    active = _active(meshy, key, now)
    limit = config.max_concurrent_tasks
    if limit is not None and len(active) >= limit:
        raise ApiError(429, "NoMoreConcurrentTasks: the account has reached its concurrent task limit.")
    pending_limit = config.max_pending_tasks
    if pending_limit is not None and sum(s.status == "PENDING" for s in active) >= pending_limit:
        raise ApiError(429, "NoMorePendingTasks: the account has reached its pending task limit.")
    if meshy.credits < cost:
        raise ApiError(402, "Insufficient credits: please top up your balance.")
    meshy.credits -= cost
    failure = meshy.take_failure("refine" if kind.endswith("refine") else "preview")
    task = FakeTask(
        id=meshy.take_task_id(str(uuid.uuid4())),
        api_key=key,
        api=api,
        type=kind,
        prompt=prompt,
        texture_prompt=texture_prompt if isinstance(texture_prompt, str) else "",
        formats=formats,
        enable_pbr=enable_pbr,
        cost=cost,
        created_mono=now,
        created_ms=int(time.time() * 1000),
        pending_s=config.pending_s,
        run_s=duration,
        preceding_at_creation=len(active),
        seed=secrets.randbelow(2**31),
        request=body,
        fail_message=failure.message if failure else None,
        fail_after_fraction=failure.after_fraction if failure else 0.5,
    )
    meshy.held(task)
    meshy.add_task(task)
    return web.json_response({"result": task.id}, status=202)
