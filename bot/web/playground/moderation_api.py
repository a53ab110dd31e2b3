"""The moderation card's API: images checked as the bot checks a post, then re-judged under any policy.

- ``POST moderation/check`` (form: ``image`` files, ``url`` links, ``policy`` JSON): per image the
  verdict, the category scores, NudeNet's boxes on every sampled frame, a preview, or why it was not
  checked; images past the bot's limits come back as "not checked" with the reason.
- ``POST moderation/judge`` (JSON ``{"policy": {...}, "images": [scored, ...]}``): the verdicts under a
  new policy from the scores the check returned: no model runs again (`ModerationService.judge_scored`).
The policy is the JSON ``lumi scan --policy`` takes: overrides over the defaults.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from aiohttp import web

from bot.errors import UserFacingError
from bot.runtime import Runtime
from bot.services.image_fetch import FetchError
from bot.services.moderation import (
    CATEGORIES,
    DEFAULT_POLICY,
    CheckStatus,
    Decision,
    ImageInspection,
    Policy,
    PolicyError,
    ScoredImage,
    bot_action,
    parse_policy,
    policy_to_json,
)
from bot.web.keys import RUNTIME
from bot.web.playground.previews import PREVIEW_SIDE, THUMB_SIDE, data_urls
from bot.web.playground.uploads import FormLimits, SkippedFile, read_form

__all__ = ["check_images", "judge_images", "moderation_limits"]

_MAX_URLS = 10
_EXAMPLE_POLICY = '{"categories": {"suggestive": {"review": 0.5}}}'


def moderation_limits(runtime: Runtime) -> FormLimits:
    """The bot's own limits on one post: images per message and bytes per image."""
    settings = runtime.settings
    return FormLimits(
        max_files=settings.moderation_max_images_per_message,
        max_file_bytes=runtime.moderation.checker.limits.max_bytes,
    )


def policy_from(raw: object) -> Policy:
    """A policy from the editor: a JSON object (or its text) of overrides over the defaults."""
    if raw is None or raw == "":
        return DEFAULT_POLICY
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise UserFacingError(
                f"The policy is not valid JSON: {error.msg} at position {error.pos}."
            ) from None
    if not isinstance(raw, dict):
        raise UserFacingError(
            'The policy must be a JSON object, e.g. {"categories": {"suggestive": {"review": 0.5}}}.'
        )
    try:
        return parse_policy(raw)
    except PolicyError as error:
        raise UserFacingError(str(error)) from None


def policy_json(runtime: Runtime, policy: Policy) -> dict[str, Any]:
    """The editor's view of a policy: its overrides (what `--policy` takes) and every category's rule."""
    effective = runtime.moderation.effective_policy(policy)
    categories = []
    for name, rule in effective.rules.items():
        categories.append(
            {
                "name": name,
                "description": CATEGORIES.get(name, "custom classifier"),
                "custom": name not in CATEGORIES,
                "review": rule.review,
                "act": rule.act,
                "review_action": (rule.review_action or effective.review_action).value,
            }
        )
    return {
        "overrides": policy_to_json(policy),
        "categories": categories,
        "auto_action": effective.auto_action.value,
        "unchecked_action": effective.unchecked_action.value,
    }


def verdict_json(scored: ScoredImage, decision: Decision) -> dict[str, Any]:
    reason = decision.reason
    if scored.status is not CheckStatus.CHECKED and decision.category is None and not decision.flagged:
        reason = scored.problem or reason
    return {
        "bot_action": bot_action(scored, decision),
        "level": decision.level.value,
        "action": decision.action.value,
        "category": decision.category,
        "score": decision.score,
        "threshold": decision.threshold,
        "reason": reason,
        "timeout_author": decision.timeout_author,
    }


def scored_json(scored: ScoredImage) -> dict[str, Any]:
    return {
        "status": scored.status.value,
        "scores": scored.scores,
        "problem": scored.problem,
        "problem_code": scored.problem_code,
        "width": scored.width,
        "height": scored.height,
    }


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def scored_from(raw: object) -> ScoredImage:
    """A scored image sent back by the page; anything malformed is refused with what was wrong."""
    if not isinstance(raw, dict):
        raise UserFacingError("Each image to judge must be an object with its status and scores.")
    try:
        status = CheckStatus(str(raw.get("status")))
    except ValueError:
        raise UserFacingError(f"Unknown image status {raw.get('status')!r}.") from None
    scores = raw.get("scores") or {}
    if not isinstance(scores, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
        for k, v in scores.items()
    ):
        raise UserFacingError("Scores must be an object of category name -> number.")
    size = [raw.get("width") or 0, raw.get("height") or 0]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size):
        raise UserFacingError("An image's width and height must be whole numbers.")
    problem, code = raw.get("problem"), raw.get("problem_code")
    return ScoredImage(
        status,
        scores={k: min(1.0, max(0.0, float(v))) for k, v in scores.items()},
        problem=problem if isinstance(problem, str) else None,
        problem_code=code if isinstance(code, str) else None,
        width=size[0],
        height=size[1],
    )


async def _image_json(
    runtime: Runtime, name: str, inspection: ImageInspection, policy: Policy
) -> dict[str, Any]:
    scored = inspection.scored
    decision = runtime.moderation.judge_scored(scored, policy)
    decoded = inspection.decoded
    preview = None
    thumbs: list[str] = []
    if decoded is not None:
        preview = (await data_urls(decoded.frames[:1], PREVIEW_SIDE))[0]
        if decoded.animated:
            thumbs = await data_urls(decoded.frames, THUMB_SIDE)
    frames = [
        {
            "index": frame.frame_index,
            "width": frame.width,
            "height": frame.height,
            "nsfw_score": frame.nsfw_score,
            "detections": frame.detections,
            "thumbnail": thumbs[position] if position < len(thumbs) else None,
        }
        for position, frame in enumerate(inspection.frames)
    ]
    return {
        "name": name,
        "scored": scored_json(scored),
        "verdict": verdict_json(scored, decision),
        "labels": inspection.labels,
        "frames": frames,
        "frames_total": inspection.frames_total,
        "animated": bool(decoded is not None and decoded.animated),
        "format": inspection.image_format,
        "preview": preview,
        "elapsed_ms": round(inspection.elapsed_ms, 1),
        "model_ms": inspection.model_ms,
    }


def _not_checked_json(runtime: Runtime, skipped: SkippedFile, policy: Policy) -> dict[str, Any]:
    """A file the bot would not download or check: what the policy does with such a post."""
    scored = ScoredImage(CheckStatus.UNREADABLE, problem=skipped.reason, problem_code=skipped.code)
    decision = runtime.moderation.judge_scored(scored, policy)
    return {
        "name": skipped.filename,
        "scored": scored_json(scored),
        "verdict": verdict_json(scored, decision),
        "labels": [],
        "frames": [],
        "frames_total": 0,
        "animated": False,
        "format": None,
        "preview": None,
        "elapsed_ms": 0.0,
        "model_ms": {},
    }


async def check_images(request: web.Request) -> web.Response:
    runtime = request.config_dict[RUNTIME]
    limits = moderation_limits(runtime)
    form = await read_form(request, limits)
    policy = policy_from(form.field("policy"))
    urls = [url.strip() for url in form.field_list("url") if url.strip()][:_MAX_URLS]
    images = [(upload.filename, upload.data) for upload in form.files]
    skipped = list(form.skipped)
    fetcher = runtime.moderation.fetcher
    for url in urls:
        name = url.rsplit("/", 1)[-1][:80] or url[:80]
        if len(images) >= limits.max_files:
            skipped.append(
                SkippedFile(name, f"past the first {limits.max_files} images of a post", "too_many_images")
            )
            continue
        try:
            fetched = await fetcher.fetch(url, filename=name)
        except FetchError as error:
            hosts = ", ".join(sorted(fetcher.allowed_hosts)) or "none"
            reason = error.message
            if error.code == "host_not_allowed":
                reason += f" Allowed hosts: {hosts} (MODERATION_FETCH_HOSTS)."
            skipped.append(SkippedFile(name, reason, error.code))
            continue
        images.append((name, fetched.data))
    if not images and not skipped:
        raise UserFacingError("Choose or drop at least one image, or paste an image link.")
    # Together, as the bot checks a post's images: their frames share the models' batches.
    inspections = await asyncio.gather(*(runtime.moderation.inspect_image(data) for _, data in images))
    results = [
        await _image_json(runtime, name, inspection, policy)
        for (name, _), inspection in zip(images, inspections, strict=True)
    ]
    results.extend(_not_checked_json(runtime, item, policy) for item in skipped)
    return web.json_response(
        {"images": results, "policy": policy_json(runtime, policy), "limits": _limits_json(limits)}
    )


async def judge_images(request: web.Request) -> web.Response:
    runtime = request.config_dict[RUNTIME]
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserFacingError("Send a JSON object with the policy and the images' scores.") from None
    if not isinstance(body, dict):
        raise UserFacingError("Send a JSON object with the policy and the images' scores.")
    policy = policy_from(body.get("policy"))
    raw_images = body.get("images") or []
    if not isinstance(raw_images, list) or len(raw_images) > 2 * moderation_limits(runtime).max_files:
        raise UserFacingError("images must be a list of at most the images of one check.")
    scored = [scored_from(raw) for raw in raw_images]
    verdicts = [verdict_json(item, runtime.moderation.judge_scored(item, policy)) for item in scored]
    return web.json_response({"verdicts": verdicts, "policy": policy_json(runtime, policy)})


def _limits_json(limits: FormLimits) -> dict[str, Any]:
    return {"max_images": limits.max_files, "max_image_bytes": limits.max_file_bytes}
