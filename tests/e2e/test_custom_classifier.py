"""A custom classifier end to end: registered while Lumi runs, it flags posts of its positive class.

The pattern classifier flags stripes and leaves dots alone; registered for the built-in "violence"
category, it follows the thresholds a moderator sets with `/moderation setup`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.services.moderation.classifiers.detector import classifier_catalog
from storage.repo import cases as repo_cases
from tests.e2e.test_moderation import setup_moderation, wait_for_alert
from tests.fakes.discord_api.server import message_text
from tests.fakes.patterns import png_bytes

pytestmark = pytest.mark.e2e


async def test_registered_classifier_raises_the_alert(make_lumi: Any, pattern_classifier: Path) -> None:
    lumi = await make_lumi()
    server = lumi.server
    listing = message_text(await lumi.slash("moderation", subcommand="classifiers", user="mod"))
    assert "None active here" in listing

    # What `lumi models add-classifier` does, while the bot runs.
    classifier_catalog(lumi.settings.data_dir).add(pattern_classifier, category="violence", verify=None)
    reply = await setup_moderation(lumi, mod_channel="mod-log", category="violence", review_threshold=0.5)
    assert "violence: review ≥ 0.50 (alert)" in reply
    listing = message_text(await lumi.slash("moderation", subcommand="classifiers", user="mod"))
    assert "#1 violence" in listing and "all servers" in listing and "flags `stripes`" in listing
    assert "review ≥ 0.50 (alert), auto-action off" in listing

    since = len(server.created_messages)
    await server.post_message(
        "photos", "alice", "dots", attachments=[("dots.png", png_bytes("dots", seed=21))]
    )
    post = await server.post_message(
        "photos", "alice", "stripes", attachments=[("stripes.png", png_bytes("stripes", seed=22))]
    )
    alert = await wait_for_alert(lumi, since, "Case #1")
    text = message_text(alert)
    assert "violence" in text and "review threshold 0.50" in text
    assert "alert only (post still up)" in text and post["id"] in text

    await asyncio.sleep(1.0)  # the dots post was checked alongside; it must not have opened a case
    async with lumi.bot.runtime.database.session() as session:
        cases = await repo_cases.list_cases(session=session, guild_id=lumi.guild_id)
    assert [(case.message_id, case.scores["violence"] > 0.5) for case in cases] == [(int(post["id"]), True)]
    assert not any(r.method == "DELETE" and post["id"] in r.path for r in server.requests)
    loaded = {model.name: model.loaded for model in lumi.bot.runtime.registry.snapshot()}
    assert loaded["classifier-1"] is True
