"""The 3D card's API: the prompt check and enhancement the bot does, and real jobs when Meshy is set up.

- ``POST 3d/check`` (JSON ``{"prompt", "style"}``): the prompt check's verdict and the enhanced prompt;
  nothing is stored and Meshy is not called.
- ``POST 3d/jobs`` (JSON ``{"prompt", "style", "texture"}``): a job through `GenerationService.submit`,
  with the bot's quotas; its live progress comes from ``/jobs/<id>/events`` (`bot.web.generate3d`), its
  model from ``/jobs/<id>``. Without ``MESHY_API_KEY`` the answer says exactly what to set.
- ``GET 3d/jobs``: the playground's recent jobs.
Jobs made here belong to no Discord user (user id 0), like those of `lumi gen3d`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from bot.errors import UserFacingError
from bot.runtime import Runtime
from bot.services.generate3d import STYLES, GenerationOptions, GenerationRequest, PromptRejected
from bot.web.keys import RUNTIME

__all__ = ["MESHY_TEST_KEY", "check_prompt", "create_job", "list_jobs", "meshy_hint"]

PLAYGROUND_USER_ID: Final = 0
MESHY_TEST_KEY: Final = "msy_dummy_api_key_for_test_mode_12345678"
_MAX_PROMPT_CHARS: Final = 600
_DISCORD_TIME: Final = re.compile(r"<t:(\d+):R>")


def meshy_hint(runtime: Runtime) -> str | None:
    """What to set for real jobs, or None when they can run."""
    if runtime.generation.enabled:
        return None
    return (
        "Real 3D jobs need MESHY_API_KEY. For a free first try put "
        f"MESHY_API_KEY={MESHY_TEST_KEY} (Meshy's test mode: no cost, always the same sample model) in "
        ".env and start Lumi again; a key from meshy.ai makes real models."
    )


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise UserFacingError('Send a JSON object such as {"prompt": "a wooden treasure chest"}.')
    return body


def _prompt_and_style(body: dict[str, Any]) -> tuple[str, str | None]:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserFacingError("Write what to make, e.g. “a small wooden treasure chest”.")
    if len(prompt) > _MAX_PROMPT_CHARS:
        raise UserFacingError(f"A prompt has at most {_MAX_PROMPT_CHARS} characters.")
    style = body.get("style") or None
    if style is not None and style not in STYLES:
        raise UserFacingError(f"Unknown style {style!r}; choose one of {', '.join(STYLES)}.")
    return prompt.strip(), style


def _readable(message: str) -> str:
    """Quota messages carry Discord's relative time markup; the page shows a plain UTC time instead."""
    return _DISCORD_TIME.sub(
        lambda match: "at " + datetime.fromtimestamp(int(match.group(1)), UTC).strftime("%H:%M UTC"), message
    )


async def check_prompt(request: web.Request) -> web.Response:
    runtime = request.config_dict[RUNTIME]
    prompt, style = _prompt_and_style(await _body(request))
    generation = runtime.generation
    try:
        await generation.check_prompt(prompt, user_id=PLAYGROUND_USER_ID)
    except PromptRejected as rejected:
        verdict = rejected.verdict
        return web.json_response(
            {
                "allowed": False,
                "problem": verdict.problem.value if verdict.problem else None,
                "message": verdict.user_message,
                "enhanced": None,
                "meshy_hint": meshy_hint(runtime),
            }
        )
    enhancement = await generation.enhancer.enhance(prompt, style=style)
    return web.json_response(
        {
            "allowed": True,
            "problem": None,
            "message": "The prompt passes the check.",
            "enhanced": {
                "text": enhancement.text,
                "backend": enhancement.backend,
                "fallbacks": list(enhancement.fallbacks),
                "elapsed_ms": round(enhancement.elapsed_s * 1000.0, 1),
            },
            "meshy_hint": meshy_hint(runtime),
        }
    )


async def create_job(request: web.Request) -> web.Response:
    runtime = request.config_dict[RUNTIME]
    body = await _body(request)
    prompt, style = _prompt_and_style(body)
    hint = meshy_hint(runtime)
    if hint is not None:
        return web.json_response({"error": hint}, status=409)
    options = GenerationOptions(texture=body.get("texture") is not False, style=style)
    request_3d = GenerationRequest(user_id=PLAYGROUND_USER_ID, prompt=prompt, options=options)
    try:
        job = await runtime.generation.submit(request_3d)
    except UserFacingError as error:
        raise UserFacingError(_readable(error.message)) from None
    base = runtime.public_base_url
    return web.json_response(
        {
            "job_id": job.id,
            "events_url": f"/jobs/{job.id}/events",
            "job_url": f"/jobs/{job.id}",
            "viewer_url": f"{base}/view/{job.id}",
        },
        status=201,
    )


async def list_jobs(request: web.Request) -> web.Response:
    runtime = request.config_dict[RUNTIME]
    jobs = await runtime.generation.history(user_id=PLAYGROUND_USER_ID, limit=10)
    return web.json_response(
        {
            "enabled": runtime.generation.enabled,
            "meshy_hint": meshy_hint(runtime),
            "jobs": [
                {
                    "id": job.id,
                    "prompt": job.prompt,
                    "state": job.state.value,
                    "progress": job.progress,
                    "created_at": job.created_at.isoformat(),
                    "viewer_url": f"{runtime.public_base_url}/view/{job.id}",
                }
                for job in jobs
            ],
        }
    )
