"""A local stand-in for Discord's CDN over real HTTP: named files served like attachments, each download
counted, unknown names answered 404 as an expired link is."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from bot.services.posts import ImageSource


class FakeCdn:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: dict[str, int] = {}
        self.base = ""
        self.host = ""

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits[name] = self.hits.get(name, 0) + 1
        if name not in self.files:
            return web.Response(status=404, text="expired")
        return web.Response(body=self.files[name], content_type="image/png")

    def source(self, name: str, *, size: int | None = None) -> ImageSource:
        """An attachment of a post, as `read_post` lists it (signed URL, declared size)."""
        return ImageSource(f"{self.base}/attachments/{name}?ex=1", name, size, attached=True)


@asynccontextmanager
async def serving_attachments(
    handle: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """``handle`` answering ``/attachments/{name}`` on a free loopback port; yields the host:port."""
    app = web.Application()
    app.router.add_get("/attachments/{name}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running_cdn() -> AsyncIterator[FakeCdn]:
    state = FakeCdn()
    async with serving_attachments(state.handle) as host:
        state.host, state.base = host, f"http://{host}"
        yield state
