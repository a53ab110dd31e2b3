"""Builds the aiohttp application and runs it on the configured host and port.

Every response carries the security headers of `headers`; database faults answer 503 (`faults`); event
streams are capped (`streams`); a client gets WEB_HEADER_TIMEOUT_S to send its request head.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bot.runtime import Runtime
from bot.web import files, health, playground
from bot.web import generate3d as generate3d_routes
from bot.web.faults import protocol_logger, storage_faults
from bot.web.headers import add_security_headers
from bot.web.keys import BLOB_ORIGINS, PLAYGROUND, RUNTIME
from bot.web.streams import STREAM_LIMITS, StreamLimits

log = logging.getLogger(__name__)


def create_app(runtime: Runtime, *, playground_mode: bool = False) -> web.Application:
    settings = runtime.settings
    app = web.Application(client_max_size=1024 * 1024, middlewares=[storage_faults])
    app.on_response_prepare.append(add_security_headers)
    app[RUNTIME] = runtime
    app[PLAYGROUND] = playground_mode
    app[BLOB_ORIGINS] = runtime.blobs.download_origins() if settings.blob_redirect else ()
    app[STREAM_LIMITS] = StreamLimits(
        total=settings.web_sse_max_connections, per_client=settings.web_sse_max_per_client
    )
    # Without a token the playground is the whole point; beside a bot, only when asked for.
    playground.setup(app, runtime, enabled=playground_mode or runtime.settings.playground_with_bot)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/metrics", health.metrics)
    app.router.add_get("/files/{token}", files.download)
    generate3d_routes.setup(app)
    return app


class WebServer:
    """Owns the aiohttp runner; `port=0` picks a free port, which `url` then reports."""

    def __init__(self, runtime: Runtime, *, playground_mode: bool = False) -> None:
        self.runtime = runtime
        self.app = create_app(runtime, playground_mode=playground_mode)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        host = self.runtime.settings.web_host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"http://{shown}:{self.port}"

    async def start(self) -> None:
        settings = self.runtime.settings
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            # Also the time a connection gets to send a complete request head: aiohttp's keep-alive timer
            # runs from the moment a connection opens, so a client trickling header bytes is dropped too.
            keepalive_timeout=settings.web_header_timeout_s,
            logger=protocol_logger(),
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.web_host, settings.web_port)
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            self._runner = None
            raise OSError(
                f"cannot listen on {settings.web_host}:{settings.web_port} ({error.strerror}); "
                "set WEB_PORT to a free port"
            ) from error
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else settings.web_port
        if not settings.public_base_url:
            self.runtime.public_base_url = self.url
        log.info("web server listening on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
