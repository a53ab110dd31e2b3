"""The web tests' server: Lumi's aiohttp app on a free port, in playground mode, over the test runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.runtime import Runtime
from bot.web.app import WebServer
from tests.fakes.blob_emulators import azurite

__all__ = ["azurite", "server"]


@pytest.fixture
async def server(runtime: Runtime) -> AsyncIterator[WebServer]:
    web_server = WebServer(runtime, playground_mode=True)
    await web_server.start()
    try:
        yield web_server
    finally:
        await web_server.stop()
