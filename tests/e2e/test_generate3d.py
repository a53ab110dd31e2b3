"""`/3d` end to end: real discord.py client, the local Discord server, the local Meshy server, real SQLite,
real blob store and web server. Download links are fetched and compared byte for byte.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from sqlmodel import col

from storage.models import GuildSettings, JobState
from storage.repo import guilds as repo_guilds
from tests.e2e.conftest import LumiFactory, LumiHarness
from tests.fakes.discord_api.protocol import JsonDict
from tests.fakes.discord_api.server import message_text
from tests.fakes.meshy_api.server import FakeMeshy, FakeMeshyConfig
from tests.services.generate3d.parts import wait_until

pytestmark = pytest.mark.e2e

WAIT_S = 30.0
READY_TITLE = "Your 3D model is ready"


@pytest.fixture
async def meshy() -> AsyncIterator[FakeMeshy]:
    async with FakeMeshy(config=FakeMeshyConfig(preview_s=0.4, refine_s=0.4)) as server:
        yield server


async def start_lumi(make_lumi: LumiFactory, meshy: FakeMeshy, **overrides: Any) -> LumiHarness:
    values: dict[str, Any] = {"meshy_api_key": meshy.api_key, "meshy_base_url": meshy.base_url}
    values.update(overrides)
    lumi = await make_lumi(**values)
    # The profanity model loads in the background at start-up; tests start once it is there.
    await lumi.bot.runtime.generation.checker.warm_up()
    return lumi


def titles(message: JsonDict) -> list[str]:
    return [embed.get("title") or "" for embed in message.get("embeds", [])]


def custom_ids(message: JsonDict) -> list[str]:
    return [
        component["custom_id"]
        for row in message.get("components", [])
        for component in row.get("components", [])
        if "custom_id" in component
    ]


async def wait_for_edit(
    lumi: LumiHarness, interaction: JsonDict, predicate: Callable[[JsonDict], bool], wait_s: float = WAIT_S
) -> JsonDict:
    """The first version of the interaction's reply (edits included) that satisfies ``predicate``."""
    record = lumi.server.interactions[int(interaction["id"])]

    def matching() -> JsonDict | None:
        return next((reply for reply in record.replies if predicate(reply)), None)

    await lumi.server.rest.requests.wait_for(
        lambda _: matching() is not None, timeout=wait_s, describe="a matching edit of the 3D reply"
    )
    found = matching()
    assert found is not None
    return found


def links(text: str) -> dict[str, str]:
    return {label: url for label, url in re.findall(r"\[([^\]]+)\]\((http[^)]+)\)", text)}


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.read()


async def test_create_progress_result_downloads_and_refine(make_lumi: LumiFactory, meshy: FakeMeshy) -> None:
    lumi = await start_lumi(make_lumi, meshy)
    interaction = await lumi.server.slash_command(
        "3d", subcommand="create", options={"prompt": "a small wooden treasure chest", "texture": False}
    )
    callback = await lumi.server.wait_for_callback(interaction)
    assert callback.json["type"] == 5  # deferred, public

    progress = await wait_for_edit(lumi, interaction, lambda m: any("Generating" in t for t in titles(m)))
    assert "▰" in message_text(progress) or "▱" in message_text(progress)
    assert any(cid.startswith("lumi:3d:cancel:") for cid in custom_ids(progress))

    result = await wait_for_edit(lumi, interaction, lambda m: READY_TITLE in titles(m))
    text = message_text(result)
    assert "a small wooden treasure chest" in text
    assert "Enhanced prompt" in text
    job_id = re.search(r"Job ([0-9a-f]{32})", text)
    assert job_id is not None
    job = await lumi.bot.runtime.generation.get_job(job_id.group(1))
    assert job is not None and job.state is JobState.DONE and job.preview_task_id

    ids = custom_ids(result)
    assert ids == [f"lumi:3d:{action}:{job.id}" for action in ("refine", "regen", "delete")]
    assert [a["filename"] for a in result["attachments"]] == ["preview.png"]
    assert result["embeds"][0]["image"]["url"] == "attachment://preview.png"

    urls = links(text)
    for label, name in (("GLB", "model.glb"), ("OBJ", "model.obj"), ("FBX", "model.fbx")):
        status, body = await fetch(urls[label])
        assert status == 200, label
        assert body == meshy.asset_bytes(job.preview_task_id, name), label
    status, page = await fetch(urls["rotate and zoom in your browser"])
    assert status == 200 and b"three.module.js" in page

    # Refine texture: a second job that textures the same shape.
    since = len(lumi.server.created_messages)
    click = await lumi.server.click_button(result, f"lumi:3d:refine:{job.id}")
    assert (await lumi.server.wait_for_callback(click)).json["type"] == 5
    refined = await wait_for_edit(lumi, click, lambda m: READY_TITLE in titles(m))
    refined_text = message_text(refined)
    assert "Textures:" in refined_text
    assert len(lumi.server.created_messages) > since
    assert [r.json["mode"] for r in meshy.create_requests] == ["preview", "refine"]
    assert meshy.create_requests[1].json["preview_task_id"] == job.preview_task_id
    refined_id = re.search(r"Job ([0-9a-f]{32})", refined_text)
    assert refined_id is not None
    child = await lumi.bot.runtime.generation.get_job(refined_id.group(1))
    assert child is not None and child.parent_job_id == job.id and child.refine_task_id
    status, body = await fetch(links(refined_text)["base color"])
    assert status == 200 and body == meshy.asset_bytes(child.refine_task_id, "texture_base_color.png")
    assert lumi.server.unhandled_requests == []


async def test_progress_edits_are_throttled(make_lumi: LumiFactory, meshy: FakeMeshy) -> None:
    meshy.config.preview_s = 4.0
    lumi = await start_lumi(make_lumi, meshy, generation_progress_interval_s=2.0)
    interaction = await lumi.server.slash_command(
        "3d", subcommand="create", options={"prompt": "a ceramic teapot", "texture": False, "enhance": False}
    )
    record = lumi.server.interactions[int(interaction["id"])]
    edits: list[float] = []

    async def watch() -> None:
        # The fake records no times, so edits are timed as they arrive.
        while True:
            while len(edits) < len(record.followups):
                edits.append(time.monotonic())
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        await wait_for_edit(lumi, interaction, lambda m: READY_TITLE in titles(m))
        await asyncio.sleep(0.05)
    finally:
        watcher.cancel()
    assert len(edits) >= 3  # several progress states, then the result
    gaps = [later - earlier for earlier, later in itertools.pairwise(edits)]
    assert min(gaps) >= 1.9, gaps


async def test_long_jobs_continue_in_a_channel_message(make_lumi: LumiFactory, meshy: FakeMeshy) -> None:
    meshy.config.preview_s = 2.5
    lumi = await start_lumi(
        make_lumi, meshy, generation_interaction_ttl_s=1.0, generation_progress_interval_s=0.5
    )
    since = len(lumi.server.created_messages)
    interaction = await lumi.server.slash_command(
        "3d", subcommand="create", options={"prompt": "a stone lighthouse", "texture": False}
    )
    moved = await wait_for_edit(
        lumi, interaction, lambda m: "continues in a new message" in (m["content"] or "")
    )
    assert moved["embeds"] == []
    result = await lumi.server.wait_for_message(
        "general", since=since, predicate=lambda m: READY_TITLE in titles(m), timeout=WAIT_S
    )
    assert any(cid.startswith("lumi:3d:refine:") for cid in custom_ids(result))


async def test_blocked_prompt_is_refused_privately_and_reported(
    make_lumi: LumiFactory, meshy: FakeMeshy
) -> None:
    lumi = await start_lumi(make_lumi, meshy)
    mod_log = lumi.server.channel("mod-log")
    async with lumi.bot.runtime.database.session() as session:
        await repo_guilds.update_guild_settings(
            session=session, guild_id=lumi.guild_id, mod_channel_id=mod_log.id
        )
        await session.commit()
    since = len(lumi.server.created_messages)
    interaction = await lumi.server.slash_command(
        "3d", subcommand="create", options={"prompt": "a naked woman statue"}
    )
    callback = await lumi.server.wait_for_callback(interaction)
    assert callback.json["type"] == 4
    assert callback.json["data"]["flags"] & 64  # ephemeral
    assert "does not generate" in callback.json["data"]["content"]
    alert = await lumi.server.wait_for_message("mod-log", since=since)
    alert_text = message_text(alert)
    assert "Blocked 3D prompt" in alert_text and "||a naked woman statue||" in alert_text
    assert meshy.create_requests == []


async def test_a_blocked_prompt_without_a_moderation_channel_is_a_moderation_problem(
    make_lumi: LumiFactory, meshy: FakeMeshy
) -> None:
    lumi = await start_lumi(make_lumi, meshy)
    interaction = await lumi.server.slash_command(
        "3d", subcommand="create", options={"prompt": "a naked woman statue"}
    )
    callback = await lumi.server.wait_for_callback(interaction)
    assert callback.json["type"] == 4 and callback.json["data"]["flags"] & 64

    def reported() -> list[str]:
        return [text for _, text in lumi.bot.runtime.moderation.problems(lumi.guild_id)]

    async def some_reported() -> bool:
        return bool(reported())

    # The problem is reported right after the refusal is answered.
    await wait_until(some_reported, timeout=WAIT_S)
    assert any("3D prompt" in text and "no moderation channel" in text for text in reported()), reported()
    assert meshy.create_requests == []


async def test_a_refusal_once_the_command_had_to_defer_stays_private(
    make_lumi: LumiFactory, meshy: FakeMeshy
) -> None:
    lumi = await start_lumi(make_lumi, meshy, generation_daily_user_limit=0)
    database = lumi.bot.runtime.database
    async with database.session() as session:
        await session.exec(sa.delete(GuildSettings).where(col(GuildSettings.guild_id) == lumi.guild_id))
        await session.commit()
    # An admission slower than Discord's patience: the guild's first settings row waits for a write that
    # another connection holds, so the command defers before it knows the answer.
    async with database.session() as holding:
        await repo_guilds.get_guild_settings(session=holding, guild_id=lumi.guild_id)
        interaction = await lumi.server.slash_command("3d", subcommand="create", options={"prompt": "a fox"})
        assert (await lumi.server.wait_for_callback(interaction)).json["type"] == 5
        await holding.rollback()
    await lumi.server.wait_for_request(
        "DELETE", rf"/webhooks/\d+/{interaction['token']}/messages/@original", timeout=WAIT_S
    )
    record = lumi.server.interactions[int(interaction["id"])]
    await lumi.server.rest.requests.wait_for(
        lambda _: bool(record.followups), timeout=WAIT_S, describe="the private refusal"
    )
    refusal = record.followups[-1].json
    assert refusal["flags"] & 64 and "used your 0 3D generations" in refusal["content"]
    assert meshy.create_requests == []


async def test_history_and_cancel(make_lumi: LumiFactory, meshy: FakeMeshy) -> None:
    meshy.config.preview_s = 30.0
    lumi = await start_lumi(make_lumi, meshy)
    interaction = await lumi.server.slash_command(
        "3d", subcommand="create", options={"prompt": "a red bicycle"}
    )
    await wait_for_edit(lumi, interaction, lambda m: any("Generating" in t for t in titles(m)))
    # Cancel once the Meshy task exists, so that it is deleted at Meshy too.
    await asyncio.wait_for(meshy.stream_opened.wait(), WAIT_S)

    cancel = await lumi.server.slash_command("3d", subcommand="cancel")
    reply = await lumi.server.wait_for_reply(cancel)
    assert "Stopped the 3D job" in message_text(reply)
    ended = await wait_for_edit(lumi, interaction, lambda m: "3D generation canceled" in titles(m))
    assert any(cid.startswith("lumi:3d:regen:") for cid in custom_ids(ended))

    history = await lumi.server.slash_command("3d", subcommand="history")
    listing = message_text(await lumi.server.wait_for_reply(history))
    assert "a red bicycle" in listing and "canceled" in listing


async def test_without_a_meshy_key_the_command_explains_the_setup(make_lumi: LumiFactory) -> None:
    lumi = await make_lumi()
    interaction = await lumi.server.slash_command("3d", subcommand="create", options={"prompt": "a fox"})
    reply = await lumi.server.wait_for_reply(interaction)
    assert "MESHY_API_KEY" in message_text(reply)


async def test_delete_and_cancel_answer_in_time_when_meshy_is_slow(
    make_lumi: LumiFactory, meshy: FakeMeshy
) -> None:
    lumi = await start_lumi(make_lumi, meshy)
    interaction = await lumi.server.slash_command(
        "3d", subcommand="create", options={"prompt": "a brass lantern", "texture": False}
    )
    result = await wait_for_edit(lumi, interaction, lambda m: READY_TITLE in titles(m))
    job_id = re.search(r"Job ([0-9a-f]{32})", message_text(result))
    assert job_id is not None
    # Every Meshy answer now takes longer than Discord waits for an interaction to be acknowledged.
    meshy.config.response_delay_s = 4.0

    click = await lumi.server.click_button(result, f"lumi:3d:delete:{job_id.group(1)}")
    callback = await lumi.server.wait_for_callback(click)
    assert callback.json["type"] == 5 and callback.json["data"]["flags"] & 64  # private "thinking"
    answer = await wait_for_edit(lumi, click, lambda m: "deleted" in message_text(m), wait_s=20)
    assert answer["flags"] & 64
    assert await lumi.bot.runtime.generation.get_job(job_id.group(1)) is None
    assert meshy.count("DELETE") == 1
    shown = lumi.server.messages_by_id[int(result["id"])]
    assert shown["embeds"] == [] and shown["components"] == [] and "deleted" in shown["content"]

    meshy.config.response_delay_s = 0.0
    meshy.config.preview_s = 30.0
    running = await lumi.server.slash_command("3d", subcommand="create", options={"prompt": "a red bicycle"})
    await wait_for_edit(lumi, running, lambda m: any("Generating" in t for t in titles(m)))
    await asyncio.wait_for(meshy.stream_opened.wait(), WAIT_S)
    meshy.config.response_delay_s = 4.0
    cancel = await lumi.server.slash_command("3d", subcommand="cancel")
    assert (await lumi.server.wait_for_callback(cancel)).json["type"] == 5
    reply = await wait_for_edit(lumi, cancel, lambda m: "Stopped the 3D job" in message_text(m), wait_s=20)
    assert reply["flags"] & 64
    assert lumi.server.unhandled_requests == []
