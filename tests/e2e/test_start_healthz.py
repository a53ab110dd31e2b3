"""`/healthz` answers from the first moments of `lumi run`, before any model is loaded and while they load.

An orchestrator probes a starting Lumi, and the models take many seconds to load on the first photo:
the web server must answer as soon as it listens (models load on first use, not at start), and keep
answering while the first photo's models load on their own threads. bench/cold_start.py times the first
answer; this test holds the behaviour.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.lumi_process import START_S, LumiProcess
from tests.e2e.photo_comment_parts import (
    astronaut_photo,
    photo_comment_env,
    post_photo_once_connected,
    replies_to,
)
from tests.fakes.discord_api.server import FakeDiscord, message_text

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(360)]

# A probe slower than this counts as no answer (orchestrators use a few seconds too).
PROBE_S = 5.0
# The first photo loads the moderation, face, emotion and comment models: long on a busy 2-core machine.
MODELS_S = 240.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def healthz(http: aiohttp.ClientSession, port: int) -> tuple[int, dict[str, Any]] | None:
    """Status and body of one probe, or None while nothing listens."""
    try:
        async with http.get(
            f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(total=PROBE_S)
        ) as response:
            return response.status, await response.json()
    except aiohttp.ClientConnectionError:
        return None


def loaded(body: dict[str, Any]) -> dict[str, bool]:
    return {model["name"]: model["loaded"] for model in body["models"]}


async def test_healthz_answers_before_and_while_the_models_load(tmp_path: Path) -> None:
    photo = astronaut_photo()
    port = free_port()
    async with FakeDiscord(interaction_deadline_s=15.0) as server, aiohttp.ClientSession() as http:
        env = photo_comment_env(tmp_path / "data", server, WEB_PORT=str(port))
        lumi = LumiProcess(env, tmp_path / "lumi.log")
        try:
            await lumi.start()
            deadline = time.monotonic() + START_S
            first = None
            while first is None:
                assert time.monotonic() < deadline, lumi.log()[-3000:]
                assert lumi.process is not None and lumi.process.returncode is None, lumi.log()[-3000:]
                first = await healthz(http, port)
                await asyncio.sleep(0.05)
            status, body = first
            assert status == 200 and body["status"] == "ok"
            # Every model is registered and none is loaded: start-up did not wait for them.
            assert {"commenter", "nudenet"} <= set(loaded(body)), body
            assert not any(loaded(body).values()), body

            post = await post_photo_once_connected(lumi, server, photo)
            # While the photo's models load, every probe is answered in time and says what is loaded.
            while_loading = []
            deadline = time.monotonic() + MODELS_S
            while "model 'commenter' loaded" not in lumi.log():
                assert time.monotonic() < deadline, lumi.log()[-3000:]
                probe = await healthz(http, port)
                assert probe is not None and probe[0] == 200, probe
                while_loading.append(loaded(probe[1]))
                await asyncio.sleep(0.2)
            assert any(not models["commenter"] for models in while_loading), while_loading

            comment = await server.wait_for_message("photos", predicate=replies_to(post), timeout=MODELS_S)
            assert message_text(comment).strip()
            after = await healthz(http, port)
            assert after is not None and after[0] == 200
            assert loaded(after[1])["commenter"], after  # the flag the probes read is a real one
        finally:
            await lumi.stop()
        assert "Traceback" not in lumi.log(), lumi.log()[-3000:]
