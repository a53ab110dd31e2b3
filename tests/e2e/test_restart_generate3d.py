"""A real Lumi process is killed (SIGKILL) during a 3D job and started again: the job finishes exactly once.

Both processes talk to the same local Discord server and Meshy double, which run in the test; the
Meshy double's request log proves that no task was created twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.lumi_process import START_S, LumiProcess, base_env
from tests.fakes.discord_api.protocol import JsonDict
from tests.fakes.discord_api.server import FakeDiscord, message_text
from tests.fakes.meshy_api.server import FakeMeshy, FakeMeshyConfig

pytestmark = pytest.mark.e2e


@pytest.fixture
async def servers() -> AsyncIterator[tuple[FakeDiscord, FakeMeshy]]:
    # A child process answers more slowly than an in-process client; Discord's 3 s would be flaky here.
    async with (
        FakeDiscord(interaction_deadline_s=15.0) as discord_server,
        FakeMeshy(config=FakeMeshyConfig(preview_s=6.0, refine_s=0.5)) as meshy,
    ):
        yield discord_server, meshy


def lumi_env(tmp_path: Path, discord_server: FakeDiscord, meshy: FakeMeshy) -> dict[str, str]:
    env = base_env(
        tmp_path / "data", discord_server.base_url, discord_server.token or "", discord_server.guild.id
    )
    env.update(
        {
            "LINK_SECRET": "restart-test-link-secret-0123456789",
            "MESHY_API_KEY": meshy.api_key,
            "MESHY_BASE_URL": meshy.base_url,
            "GENERATION_PROGRESS_INTERVAL_S": "0.5",
        }
    )
    return env


def is_result(message: JsonDict) -> bool:
    return any((embed.get("title") or "") == "Your 3D model is ready" for embed in message.get("embeds", []))


async def test_killed_lumi_resumes_the_job_and_creates_no_task_twice(
    servers: tuple[FakeDiscord, FakeMeshy], tmp_path: Path
) -> None:
    discord_server, meshy = servers
    env = lumi_env(tmp_path, discord_server, meshy)
    first = LumiProcess(env, tmp_path / "lumi-1.log")
    second = LumiProcess(env, tmp_path / "lumi-2.log")
    try:
        await first.start()
        await first.wait_for_log("connected as")
        await first.wait_for_log("English profanity model loaded")
        interaction = await discord_server.slash_command(
            "3d", subcommand="create", options={"prompt": "a brass pocket watch"}
        )
        await discord_server.wait_for_callback(interaction, timeout=15)
        # The preview task exists and its id is stored (the stream opens only after that): kill now.
        await asyncio.wait_for(meshy.stream_opened.wait(), START_S)
        assert [r.json["mode"] for r in meshy.create_requests] == ["preview"]
        await first.kill()

        meshy.stream_opened.clear()
        await second.start()
        await second.wait_for_log("resumed 1 unfinished 3D job")
        record = discord_server.interactions[int(interaction["id"])]
        await discord_server.rest.requests.wait_for(
            lambda _: any(is_result(reply) for reply in record.replies),
            timeout=START_S,
            describe="the 3D result after the restart",
        )
        result = next(reply for reply in record.replies if is_result(reply))
        assert "a brass pocket watch" in message_text(result)
        assert "Textures:" in message_text(result)
    finally:
        await first.stop()
        await second.stop()

    creates = [r.json["mode"] for r in meshy.create_requests]
    assert creates == ["preview", "refine"], creates
    assert len(meshy.tasks) == 2
    # Exactly one result: every later edit of the reply (if any) is the same result again, never a rerun.
    results = [reply for reply in record.replies if is_result(reply)]
    assert results and {r["id"] for r in results} == {results[0]["id"]}
    assert "Traceback" not in second.log(), second.log()[-3000:]
