"""`/scan` and **Scan image** end to end: private answers, the per-user limit, and a limit store that
is down."""

from __future__ import annotations

import re

import pytest

from bot.services.rate_limits import build_rate_limits
from storage.repo import cases as repo_cases
from tests.e2e.conftest import LumiHarness
from tests.e2e.moderation_parts import WAIT_S, photo
from tests.fakes import images as corpus
from tests.fakes.discord_api.server import message_text

pytestmark = pytest.mark.e2e


async def test_scan_command_and_context_menu_answer_privately(lumi: LumiHarness) -> None:
    server = lumi.server
    reply = await lumi.slash("scan", user="alice", options={"image": ("cat.png", photo("chelsea"))})
    assert reply["flags"] & 64
    assert "cat.png" in message_text(reply) and "safe" in message_text(reply)

    post = await server.post_message(
        "nsfw", "alice", attachments=[("a.png", photo("coffee")), ("b.txt.jpg", corpus.PLAIN_TEXT)]
    )
    interaction = await server.message_context_command("Scan image", post, user="mod")
    reply = await server.wait_for_reply(interaction, timeout=WAIT_S)
    text = message_text(reply)
    assert reply["flags"] & 64
    assert "**a.png**: ✅ safe" in text and "This file is text, not an image." in text
    async with lumi.bot.runtime.database.session() as session:
        assert await repo_cases.list_cases(session=session, guild_id=lumi.guild_id) == []


async def test_scan_allows_five_a_minute_per_user(lumi: LumiHarness) -> None:
    # Text files fail fast; the limit counts every use, whatever its outcome.
    for _ in range(5):
        reply = await lumi.slash("scan", user="alice", options={"image": ("t.jpg", corpus.PLAIN_TEXT)})
        assert "This file is text, not an image." in message_text(reply)
    refused = await lumi.slash("scan", user="alice", options={"image": ("t.jpg", corpus.PLAIN_TEXT)})
    assert refused["flags"] & 64
    assert re.fullmatch(r"Slow down: try again in (5[0-9]|60) s\.", message_text(refused))
    # Another user has a window of their own.
    other = await lumi.slash("scan", user="mod", options={"image": ("t.jpg", corpus.PLAIN_TEXT)})
    assert "This file is text, not an image." in message_text(other)


async def test_scan_is_refused_with_a_reason_while_the_shared_limits_are_unreachable(
    lumi: LumiHarness,
) -> None:
    # As in a distributed Lumi whose Redis is down (nothing listens on port 1).
    embedded = lumi.bot.runtime.rate_limits
    lumi.bot.runtime.rate_limits = build_rate_limits("redis://127.0.0.1:1/0")
    try:
        refused = await lumi.slash("scan", user="alice", options={"image": ("t.jpg", corpus.PLAIN_TEXT)})
        assert refused["flags"] & 64
        assert message_text(refused) == (
            "Lumi cannot check its rate limits right now, so /scan is paused; try again in a minute."
        )
    finally:
        await lumi.bot.runtime.rate_limits.close()
        lumi.bot.runtime.rate_limits = embedded
    # The bot kept serving: with its limits back, the same user's /scan runs.
    reply = await lumi.slash("scan", user="alice", options={"image": ("t.jpg", corpus.PLAIN_TEXT)})
    assert "This file is text, not an image." in message_text(reply)
