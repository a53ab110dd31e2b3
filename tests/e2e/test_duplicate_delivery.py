"""A message Discord delivers twice (after a resume, or to two sessions on one shard) is handled once:
one moderation case and one alert, one photo comment."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from storage.repo import cases as repo_cases
from tests.e2e.conftest import LumiHarness
from tests.e2e.moderation_parts import (
    WAIT_S,
    photo,
    setup_moderation,
    wait_for_alert,
    wait_for_alert_recorded,
)
from tests.e2e.test_comments import NO_DOWNLOADS, records, replies_to, settle

pytestmark = pytest.mark.e2e


async def wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not any(text in record.getMessage() for record in caplog.records):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no log line with {text!r} after {WAIT_S}s")
        await asyncio.sleep(0.05)


async def test_a_flagged_post_delivered_twice_gets_one_case_and_one_alert(
    lumi: LumiHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.services.moderation.recording")
    server = lumi.server
    await setup_moderation(lumi, mod_channel="mod-log", review_threshold=0.0)
    since = len(server.created_messages)
    post = await server.post_message(
        "photos", "alice", attachments=[("rocket.jpg", photo("rocket"))], deliveries=2
    )
    await wait_for_alert(lumi, since, "Case #1")
    await wait_for_alert_recorded(lumi, 1)
    await wait_for_log(caplog, f"message {post['id']} in guild {lumi.guild_id} already has a case")
    await asyncio.sleep(0.5)  # anything the second delivery might still do

    async with lumi.bot.runtime.database.session() as session:
        cases = await repo_cases.list_cases(session=session, guild_id=lumi.guild_id)
    assert [(case.case_number, case.message_id) for case in cases] == [(1, int(post["id"]))]
    alerts = [m for m in server.messages_in("mod-log") if m["embeds"]]
    assert len(alerts) == 1


async def test_a_photo_delivered_twice_gets_one_comment(make_lumi: Any) -> None:
    lumi: LumiHarness = await make_lumi(**NO_DOWNLOADS)
    server = lumi.server
    # No cooldown: only the message's own claim keeps the second delivery from a second comment.
    await lumi.bot.runtime.comments.configure(
        lumi.guild_id, enable_channels=[server.channel("photos").id], cooldown_s=0
    )
    post = await server.post_message(
        "photos", "alice", attachments=[("me.png", photo("astronaut"))], deliveries=2
    )
    comment = await server.wait_for_message("photos", predicate=replies_to(post), timeout=WAIT_S)
    await settle(lumi)
    await asyncio.sleep(0.5)
    assert [m for m in server.created_messages if replies_to(post)(m)] == [comment]
    assert [record.message_id for record in await records(lumi)] == [int(post["id"])]
