"""`/lumi status` end to end: Lumi logs in to the fake Discord, syncs to the dev guild and answers."""

from __future__ import annotations

import pytest

from bot import __version__
from tests.e2e.conftest import LumiHarness
from tests.fakes.discord_api.server import message_text

pytestmark = pytest.mark.e2e


async def test_commands_are_synced_to_the_dev_guild_only(lumi: LumiHarness) -> None:
    assert lumi.bot.failed_extensions == {}
    commands = {command["name"]: command for command in lumi.commands_sync.json}
    assert "lumi" in commands
    subcommands = {option["name"] for option in commands["lumi"]["options"] if option["type"] == 1}
    assert "status" in subcommands
    global_syncs = [r for r in lumi.server.requests if r.method == "PUT" and "/guilds/" not in r.path]
    assert global_syncs == []


async def test_lumi_status_reports_version_uptime_and_database(lumi: LumiHarness) -> None:
    interaction = await lumi.server.slash_command("lumi", subcommand="status", user="mod", channel="general")

    callback = await lumi.server.wait_for_callback(interaction)
    assert callback.status == 200
    assert callback.json["type"] in (4, 5)  # a direct answer or a defer, never nothing
    reply = await lumi.server.wait_for_reply(interaction)
    text = message_text(reply)
    assert __version__ in text
    assert "uptime" in text.lower()
    assert "sqlite" in text.lower()
    # An embedded Lumi runs every shard Discord recommends (one here), and says so.
    assert "0 of 1 (this process)" in text
    assert lumi.server.unhandled_requests == []
