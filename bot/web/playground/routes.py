"""Where the playground's pieces are mounted: `/`, its scripts, and its API as a sub-application whose
middlewares (`guards`) apply to the API alone."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from bot.runtime import Runtime
from bot.web.keys import RUNTIME
from bot.web.playground import comments_api, generate3d_api, moderation_api, status_api
from bot.web.playground.guards import (
    RateLimit,
    error_middleware,
    rate_limit_middleware,
    same_origin_middleware,
)
from bot.web.playground.page import PLAYGROUND_ON, index

__all__ = ["API_PREFIX", "setup"]

API_PREFIX = "/playground/api"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "playground"


def setup(app: web.Application, runtime: Runtime, *, enabled: bool) -> None:
    """Serve `/`; with ``enabled``, also the playground's scripts and API."""
    app[PLAYGROUND_ON] = enabled
    app.router.add_get("/", index)
    # The stylesheet serves the status page too.
    app.router.add_static("/static/playground/", STATIC_DIR, append_version=False)
    if not enabled:
        return
    limit = RateLimit(runtime.settings.playground_rate_limit)
    api = web.Application(
        middlewares=[
            error_middleware,
            same_origin_middleware(lambda: runtime.public_base_url),
            rate_limit_middleware(limit),
        ],
        # Uploads are streamed part by part under the bot's limits (`uploads`); JSON bodies stay small.
        client_max_size=1024 * 1024,
    )
    api[RUNTIME] = runtime
    warmup = status_api.Warmup()
    api[status_api.WARMUP] = warmup
    api.router.add_get("/status", status_api.status)
    api.router.add_post("/warmup", status_api.warm_up)
    api.router.add_post("/moderation/check", moderation_api.check_images)
    api.router.add_post("/moderation/judge", moderation_api.judge_images)
    api.router.add_post("/comments/photo", comments_api.comment_photo)
    api.router.add_post("/comments/labels", comments_api.comment_labels)
    api.router.add_post("/3d/check", generate3d_api.check_prompt)
    api.router.add_get("/3d/jobs", generate3d_api.list_jobs)
    api.router.add_post("/3d/jobs", generate3d_api.create_job)

    async def stop_warmup(_: web.Application) -> None:
        await warmup.stop()

    app.on_cleanup.append(stop_warmup)
    app.add_subapp(API_PREFIX, api)
