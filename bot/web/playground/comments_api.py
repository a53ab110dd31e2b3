"""The photo-comment card's API: perception laid open, and a comment from every backend with its time.

- ``POST comments/photo`` (form: one ``image``, ``language`` ko|en): faces with their emotions, objects,
  the label list, and each backend's comment (`showcase_photo`);
- ``POST comments/labels`` (JSON ``{"labels": "기쁨, 재킷", "language": "ko"}``): each backend's comment
  for labels typed by hand (`showcase_labels`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from bot.errors import UserFacingError
from bot.services.comments import CommentShowcase, showcase_labels, showcase_photo
from bot.web.keys import RUNTIME
from bot.web.playground.previews import PREVIEW_SIDE, data_urls
from bot.web.playground.uploads import FormLimits, read_form
from inference.images import ImageRejected
from inference.labels import Label, Language

__all__ = ["comment_labels", "comment_photo"]


def _language(raw: object) -> Language:
    if raw in (None, "", "ko"):
        return "ko"
    if raw == "en":
        return "en"
    raise UserFacingError("The comment language is ko (Korean) or en (English).")


def _label_json(label: Label) -> dict[str, Any]:
    return {"ko": label.ko, "en": label.en, "kind": label.kind, "score": round(label.score, 3)}


def _rounded(scores: Mapping[str, float]) -> dict[str, float]:
    return {name: round(score, 3) for name, score in scores.items()}


def _box(box: tuple[int, int, int, int], width: int, height: int) -> list[float]:
    """A pixel box as fractions of the frame, which is how the page draws it over any preview size."""
    x, y, w, h = box
    return [round(x / width, 4), round(y / height, 4), round(w / width, 4), round(h / height, 4)]


async def _showcase_json(showcase: CommentShowcase) -> dict[str, Any]:
    body: dict[str, Any] = {
        "language": showcase.language,
        "labels": [_label_json(label) for label in showcase.labels],
        "comments": [
            {
                "backend": item.backend,
                "comment": item.comment,
                "elapsed_ms": item.elapsed_ms,
                "problem": item.problem,
            }
            for item in showcase.tries
        ],
        "withheld": showcase.withheld,
        "faces": [],
        "objects": [],
        "missing_models": [],
        "perceive_ms": showcase.perceive_ms,
        "preview": None,
    }
    frame, perception = showcase.frame, showcase.perception
    if frame is not None:
        body["preview"] = (await data_urls([frame], PREVIEW_SIDE))[0]
    if perception is not None and frame is not None:
        width, height = frame.size
        body["missing_models"] = perception.missing
        body["faces"] = [
            {
                "box": _box((face.box.x, face.box.y, face.box.width, face.box.height), width, height),
                "score": round(face.box.score, 3),
                "emotions": {
                    k: round(v, 3) for k, v in (face.emotions.scores.items() if face.emotions else ())
                },
                "label": None if face.label is None else _label_json(face.label),
            }
            for face in perception.faces
        ]
        body["objects"] = [
            {
                "name": seen.detection.name,
                "score": round(seen.detection.score, 3),
                "box": _box(seen.detection.box, width, height),
                "label": None if seen.label is None else _label_json(seen.label),
            }
            for seen in perception.objects
        ]
    return body


async def comment_photo(request: web.Request) -> web.Response:
    runtime = request.config_dict[RUNTIME]
    limits = FormLimits(max_files=1, max_file_bytes=runtime.comments.image_limits.max_bytes)
    form = await read_form(request, limits)
    if form.skipped:
        raise UserFacingError(f"{form.skipped[0].filename}: {form.skipped[0].reason}.")
    if not form.files:
        raise UserFacingError("Choose or drop a photo first.")
    language = _language(form.field("language"))
    try:
        showcase = await showcase_photo(runtime.comments, form.files[0].data, language=language)
    except ImageRejected as rejected:
        raise UserFacingError(f"{form.files[0].filename}: {rejected.message}") from None
    return web.json_response(await _showcase_json(showcase))


async def comment_labels(request: web.Request) -> web.Response:
    runtime = request.config_dict[RUNTIME]
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserFacingError('Send a JSON object such as {"labels": "기쁨, 재킷"}.') from None
    if not isinstance(body, dict) or not isinstance(body.get("labels"), str | list):
        raise UserFacingError('Send a JSON object such as {"labels": "기쁨, 재킷"}.')
    raw = body["labels"]
    words = raw.split(",") if isinstance(raw, str) else [str(item) for item in raw]
    showcase = await showcase_labels(runtime.comments, words, language=_language(body.get("language")))
    return web.json_response(await _showcase_json(showcase))
