"""What the page shows above the cards: which models are loaded or loading, which features are set up.

``GET status`` is polled by the page while models load; ``POST warmup`` starts loading every registered
model in the background once (the first check would otherwise wait for them), so the page stays
usable and says which are still loading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from bot.errors import UserFacingError
from bot.runtime import Runtime
from bot.services.generate3d import STYLES
from bot.web.keys import RUNTIME
from bot.web.playground.generate3d_api import meshy_hint
from bot.web.playground.moderation_api import moderation_limits

__all__ = ["WARMUP", "Warmup", "status", "warm_up"]

log = logging.getLogger(__name__)


class Warmup:
    """The one background task that loads the models; cancelled when the web server stops."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None

    def start(self, runtime: Runtime) -> bool:
        if self.task is not None:
            return False
        self.task = asyncio.create_task(self._load(runtime), name="lumi-playground-warmup")
        return True

    @staticmethod
    async def _load(runtime: Runtime) -> None:
        outcome = await runtime.registry.preload()
        failed = {name: error.reason for name, error in outcome.items() if error is not None}
        if failed:
            log.info("playground warm-up: models that could not load: %s", failed)

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


WARMUP = web.AppKey("playground_warmup", Warmup)


async def _custom_classifiers(runtime: Runtime) -> list[dict[str, Any]]:
    """The registered classifiers that score every image outside a server (those for all servers)."""
    catalog = runtime.moderation.classifiers
    if catalog is None:
        return []
    try:
        registered = await catalog.current()
    except UserFacingError as error:
        return [{"id": None, "category": None, "name": None, "problem": error.message}]
    return [
        {"id": item.id, "category": item.category, "name": item.name, "problem": None}
        for item in registered
        if item.applies_to(None)
    ]


async def status_json(runtime: Runtime) -> dict[str, Any]:
    settings = runtime.settings
    models = [
        {
            "name": model.name,
            "device": model.device,
            "loaded": model.loaded,
            "loading": model.loading,
            "error": model.error,
        }
        for model in runtime.registry.snapshot()
    ]
    limits = moderation_limits(runtime)
    return {
        "models": models,
        "loading": [model["name"] for model in models if model["loading"]],
        "connected_to_discord": settings.has_discord_token,
        "features": {
            "meshy": runtime.generation.enabled,
            "meshy_hint": meshy_hint(runtime),
            "styles": list(STYLES),
            "comment_backends": runtime.comments.writer.available(),
            "openai_moderation": settings.moderation_openai_api_key is not None,
            "custom_classifiers": await _custom_classifiers(runtime),
        },
        "limits": {
            "max_images": limits.max_files,
            "max_image_mb": round(limits.max_file_bytes / (1024 * 1024), 1),
            "max_pixels": runtime.moderation.checker.limits.max_pixels,
            "max_frames": runtime.moderation.checker.limits.max_frames,
            "rate_limit": settings.playground_rate_limit,
        },
    }


async def status(request: web.Request) -> web.Response:
    return web.json_response(await status_json(request.config_dict[RUNTIME]))


async def warm_up(request: web.Request) -> web.Response:
    runtime = request.config_dict[RUNTIME]
    started = request.config_dict[WARMUP].start(runtime)
    return web.json_response({"started": started, **(await status_json(runtime))})
