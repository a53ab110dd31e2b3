"""Floods: live progress streams are capped, and slow request heads are cut off.

Only against loopback addresses (127.0.0.2 and .3 stand for other clients), with caps of a few streams
and a one-second timeout, so each flood stays a handful of connections and a few seconds.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
import pytest

from bot.runtime import Runtime
from bot.services.generate3d.service import GenerationOptions, GenerationRequest
from bot.web.app import WebServer
from bot.web.streams import StreamLimits
from tests.conftest import make_settings
from tests.fakes.meshy_api.server import FakeMeshy, FakeMeshyConfig


async def test_event_streams_are_capped_per_client_and_in_total(tmp_path: Path) -> None:
    async with FakeMeshy(config=FakeMeshyConfig(preview_s=60.0)) as meshy:
        settings = make_settings(
            tmp_path,
            meshy_api_key=meshy.api_key,
            meshy_base_url=meshy.base_url,
            web_sse_max_per_client=2,
            web_sse_max_connections=3,
        )
        runtime = await Runtime.open(settings)
        server = WebServer(runtime)
        await server.start()
        sessions: list[aiohttp.ClientSession] = []
        try:
            job = await runtime.generation.submit(
                GenerationRequest(user_id=1, prompt="a slow tower", options=GenerationOptions()), checked=True
            )
            url = f"{server.url}/jobs/{job.id}/events"

            def client(address: str) -> aiohttp.ClientSession:
                session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))
                sessions.append(session)
                return session

            first, second, third = client("127.0.0.1"), client("127.0.0.2"), client("127.0.0.3")
            held = [await first.get(url), await first.get(url)]
            assert [r.status for r in held] == [200, 200]
            async with first.get(url) as refused:
                assert refused.status == 503
                assert "from your address (at most 2)" in await refused.text()
            held.append(await second.get(url))
            assert held[-1].status == 200
            async with third.get(url) as refused:
                assert refused.status == 503 and refused.headers["Retry-After"] == "30"
                assert "limit of 3 live progress streams" in await refused.text()
            # The page and the job's JSON are not streams: they still answer.
            async with third.get(f"{server.url}/jobs/{job.id}") as response:
                assert response.status == 200
            for response in held:
                response.close()
        finally:
            for session in sessions:
                await session.close()
            await server.stop()
            await runtime.close()


def test_a_stream_slot_is_given_back_however_the_stream_ends() -> None:
    limits = StreamLimits(total=2, per_client=1)
    with limits.slot("a"):
        assert (limits.open_streams, limits.open_from("a")) == (1, 1)
    with pytest.raises(RuntimeError), limits.slot("a"):
        raise RuntimeError("the stream failed")
    assert limits.open_streams == 0
    with limits.slot("a"), limits.slot("b"):
        assert limits.open_streams == 2


async def test_a_client_that_never_finishes_its_headers_is_dropped(tmp_path: Path) -> None:
    runtime = await Runtime.open(make_settings(tmp_path, web_header_timeout_s=1.0))
    server = WebServer(runtime)
    await server.start()
    try:
        assert server.port is not None
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        await writer.drain()
        async with asyncio.timeout(10):
            while True:
                try:
                    writer.write(b"X-Slow: 1\r\n")  # a line now and then does not keep it open either
                    await writer.drain()
                    data = await asyncio.wait_for(reader.read(1024), timeout=0.3)
                except TimeoutError:
                    continue
                except ConnectionError:
                    break
                if not data:
                    break
        assert time.monotonic() - started < 5
        writer.close()
        # A well-behaved client is unaffected.
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/healthz") as response:
            assert response.status == 200
    finally:
        await server.stop()
        await runtime.close()


def test_header_timeout_and_stream_caps_are_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert settings.web_header_timeout_s == 20.0
    assert (settings.web_sse_max_connections, settings.web_sse_max_per_client) == (200, 10)
    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    for name in ("WEB_HEADER_TIMEOUT_S", "WEB_SSE_MAX_CONNECTIONS", "WEB_SSE_MAX_PER_CLIENT"):
        assert re.search(rf"^{name}=", example, re.MULTILINE), name
