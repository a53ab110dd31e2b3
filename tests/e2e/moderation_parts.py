"""Helpers of the moderation end-to-end tests: package photos, `/moderation setup`, alerts, cases, buttons."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from storage.models import ModerationCase
from storage.repo import cases as repo_cases
from tests.e2e.conftest import LumiHarness
from tests.fakes import images as corpus
from tests.fakes.discord_api.protocol import JsonDict
from tests.fakes.discord_api.server import message_text

WAIT_S = 30.0  # first image loads the models; generous for a busy 2-core machine


def photo(name: str) -> bytes:
    data = corpus.photo_bytes(name)
    if data is None:
        pytest.skip(f"the package that ships the {name} photo is not installed")
    return data


async def setup_moderation(lumi: LumiHarness, **options: Any) -> str:
    interaction = await lumi.server.slash_command(
        "moderation", subcommand="setup", user="owner", channel="general", options=options
    )
    return message_text(await lumi.server.wait_for_reply(interaction, timeout=WAIT_S))


async def wait_for_alert(lumi: LumiHarness, since: int, title: str) -> JsonDict:
    return await lumi.server.wait_for_message(
        "mod-log",
        since=since,
        predicate=lambda m: bool(m["embeds"]) and m["embeds"][0].get("title", "").startswith(title),
        timeout=WAIT_S,
    )


async def case_number(lumi: LumiHarness, number: int) -> ModerationCase:
    async with lumi.bot.runtime.database.session() as session:
        case = await repo_cases.get_case(session=session, guild_id=lumi.guild_id, case_number=number)
    assert case is not None
    return case


async def wait_for_alert_recorded(lumi: LumiHarness, number: int) -> ModerationCase:
    """The alert reaches Discord before Lumi stores its message id on the case; wait for the latter."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        case = await case_number(lumi, number)
        if case.alert_message_id is not None or asyncio.get_running_loop().time() > deadline:
            return case
        await asyncio.sleep(0.05)


def buttons(message: JsonDict) -> dict[str, JsonDict]:
    return {
        component["custom_id"].split(":")[2]: component
        for row in message["components"]
        for component in row["components"]
    }


async def click(lumi: LumiHarness, alert: JsonDict, action: str, user: str = "mod") -> str:
    """Click a case button; returns the text of Lumi's private answer to the clicker."""
    since = len(lumi.server.created_messages)
    await lumi.server.click_button(alert, buttons(alert)[action]["custom_id"], user=user)
    reply = await lumi.server.wait_for_message(
        since=since, predicate=lambda m: bool(int(m["flags"]) & 64), timeout=WAIT_S
    )
    return message_text(reply)
