"""A message or an interaction Discord delivers twice (after a resume, or to two sessions on one shard) is
handled once: one moderation case and one alert, one photo comment, one answer to a slash command, a
button click or a modal submission."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
import pytest

from cogs.shared.modals import ClaimedModal
from storage.repo import cases as repo_cases
from tests.e2e.conftest import LumiHarness
from tests.e2e.moderation_parts import (
    WAIT_S,
    buttons,
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


def callbacks_to(lumi: LumiHarness, interaction: dict[str, Any]) -> list[int]:
    """The status of every callback Lumi sent for the interaction (a second answer would be a 400)."""
    path = f"/interactions/{interaction['id']}/"
    return [r.status for r in lumi.server.requests if r.method == "POST" and r.path.startswith(path)]


async def test_a_moderator_button_click_delivered_twice_is_handled_once(
    lumi: LumiHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.command_tree")
    server = lumi.server
    await setup_moderation(lumi, mod_channel="mod-log", review_threshold=0.0)
    since = len(server.created_messages)
    await server.post_message("photos", "alice", attachments=[("rocket.jpg", photo("rocket"))])
    alert = await wait_for_alert(lumi, since, "Case #1")
    await wait_for_alert_recorded(lumi, 1)

    since = len(server.created_messages)
    click = await server.click_button(alert, buttons(alert)["dismiss"]["custom_id"], user="mod", deliveries=2)
    reply = await server.wait_for_message(
        since=since, predicate=lambda m: bool(int(m["flags"]) & 64), timeout=WAIT_S
    )
    await wait_for_log(caplog, f"interaction {click['id']} handled already (Discord delivered it twice)")
    await asyncio.sleep(0.5)  # anything the second delivery might still do
    assert callbacks_to(lumi, click) == [200]
    assert [m for m in server.created_messages[since:] if int(m["flags"]) & 64] == [reply]
    async with lumi.bot.runtime.database.session() as session:
        [case] = await repo_cases.list_cases(session=session, guild_id=lumi.guild_id)
    assert case.status == "dismissed"


async def test_a_slash_command_delivered_twice_is_answered_once(
    lumi: LumiHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.interaction_errors")
    command = await lumi.server.slash_command("lumi", subcommand="help", deliveries=2)
    await lumi.server.wait_for_reply(command, timeout=WAIT_S)
    await wait_for_log(caplog, f"interaction {command['id']} handled already (Discord delivered it twice)")
    await asyncio.sleep(0.3)
    assert callbacks_to(lumi, command) == [200]


class _Feedback(ClaimedModal, title="Feedback"):
    note: discord.ui.TextInput[Any] = discord.ui.TextInput(label="Note", custom_id="note")

    def __init__(self) -> None:
        super().__init__(custom_id="lumi:test:feedback", timeout=None)
        self.submitted: list[str] = []

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        self.submitted.append(self.note.value)
        await interaction.response.send_message("thanks", ephemeral=True)


async def test_a_modal_submission_delivered_twice_is_handled_once(
    lumi: LumiHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.command_tree")
    modal = _Feedback()
    # What `interaction.response.send_modal` does when a command opens it: the process keeps the modal.
    lumi.bot._connection.store_view(modal)
    submit = await lumi.server.submit_modal(
        "lumi:test:feedback", {"note": "nice"}, user="alice", deliveries=2
    )
    await lumi.server.wait_for_reply(submit, timeout=WAIT_S)
    await wait_for_log(caplog, f"interaction {submit['id']} handled already (Discord delivered it twice)")
    await asyncio.sleep(0.3)
    assert modal.submitted == ["nice"]
    assert callbacks_to(lumi, submit) == [200]
