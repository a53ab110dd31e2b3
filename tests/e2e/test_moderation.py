"""Image moderation end to end: real discord.py client, real models, real SQLite, the local Discord server.

A harmless package photo is flagged the way a moderator could do it: `/moderation setup` with a review
threshold of 0 makes every image reach the review band.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any, get_args

import pytest
from PIL import Image

from bot.services.moderation.policy import CATEGORIES
from cogs.moderation.settings import Category
from storage.models import CaseAction, CaseStatus, ModerationCase
from storage.repo import cases as repo_cases
from tests.e2e.conftest import LumiHarness
from tests.e2e.moderation_parts import (
    WAIT_S,
    buttons,
    case_number,
    click,
    photo,
    setup_moderation,
    wait_for_alert,
    wait_for_alert_recorded,
)
from tests.fakes import images as corpus
from tests.fakes.discord_api.server import message_text

pytestmark = pytest.mark.e2e


def test_slash_command_categories_match_the_policy() -> None:
    assert set(get_args(Category)) == set(CATEGORIES)


async def test_text_only_messages_cost_nothing(lumi: LumiHarness) -> None:
    await lumi.server.post_message("photos", "alice", "just words, and a link https://example.org/a.png")
    await lumi.server.post_message("nsfw", "alice", attachments=[("cat.png", photo("chelsea"))])
    await asyncio.sleep(0.5)
    assert len(lumi.server.rest.cdn_requests) == 0
    assert not any(model.loaded for model in lumi.bot.runtime.registry.snapshot())
    async with lumi.bot.runtime.database.session() as session:
        assert await repo_cases.list_cases(session=session, guild_id=lumi.guild_id) == []


async def test_flagged_post_is_held_alerted_and_restored_after_a_restart(make_lumi: Any) -> None:
    lumi: LumiHarness = await make_lumi()
    server = lumi.server
    reply = await setup_moderation(lumi, mod_channel="mod-log", review_threshold=0.0)
    assert "review ≥ 0.00 (hold)" in reply

    since_messages = len(server.created_messages)
    post = await server.post_message("photos", "alice", "my cat", attachments=[("cat.png", photo("chelsea"))])
    await server.wait_for_request(
        "DELETE", rf"/channels/{post['channel_id']}/messages/{post['id']}", timeout=WAIT_S
    )
    assert any(r.path.endswith("/cat.png") for r in server.rest.cdn_requests)
    alert = await wait_for_alert(lumi, since_messages, "Case #1")
    text = message_text(alert)
    alice = server.member("alice")
    assert f"<@{alice.id}>" in text and f"<#{post['channel_id']}>" in text
    assert "held for review" in text and "sexual_explicit" in text
    assert [a["filename"] for a in alert["attachments"]] == ["SPOILER_cat.png"]
    case = await case_number(lumi, 1)
    assert (case.status, case.action) == (CaseStatus.OPEN, CaseAction.HELD)
    assert set(buttons(alert)) == {"confirm", "restore", "timeout", "dismiss"}
    assert buttons(alert)["restore"]["custom_id"] == f"lumi:mod:restore:{case.id}"

    # The buttons survive a restart: no view is re-registered for this message.
    await lumi.stop()
    lumi = await make_lumi()

    refused = await click(lumi, alert, "restore", user="alice")
    assert "Manage Messages" in refused
    assert (await case_number(lumi, 1)).status is CaseStatus.OPEN

    since = len(server.requests)
    answer = await click(lumi, alert, "restore")
    repost = await server.wait_for_request(
        "POST", rf"/channels/{post['channel_id']}/messages", since=since, timeout=WAIT_S
    )
    assert [f.filename for f in repost.files] == ["cat.png"] and repost.files[0].data == photo("chelsea")
    assert f"<@{alice.id}>" in repost.json["content"] and "restored by" in repost.json["content"]
    edit = await server.wait_for_request("PATCH", r"/webhooks/\d+/[^/]+/messages/@original", since=since)
    assert "restored by" in message_text(edit.json)
    assert all(button["disabled"] for button in buttons(alert).values())
    assert "restored by" in answer
    case = await case_number(lumi, 1)
    assert (case.status, case.decided_by, case.evidence_key) == (
        CaseStatus.RESTORED,
        server.member("mod").id,
        None,
    )


async def test_confirmed_image_is_auto_actioned_when_posted_again(lumi: LumiHarness) -> None:
    server = lumi.server
    await setup_moderation(lumi, mod_channel="mod-log", review_threshold=0.0)
    since_messages = len(server.created_messages)
    await server.post_message("photos", "alice", attachments=[("astronaut.png", photo("astronaut"))])
    alert = await wait_for_alert(lumi, since_messages, "Case #1")
    since = len(server.requests)
    answer = await click(lumi, alert, "confirm")
    assert "confirmed by" in answer
    await server.wait_for_request("PATCH", r"/webhooks/\d+/[^/]+/messages/@original", since=since)
    assert "confirmed by" in message_text(alert)
    assert {name: b["disabled"] for name, b in buttons(alert).items()} == {
        "confirm": True,
        "restore": True,
        "timeout": False,
        "dismiss": True,
    }
    assert (await case_number(lumi, 1)).status is CaseStatus.CONFIRMED

    alice = server.member("alice")
    answer = await click(lumi, alert, "timeout")
    timeout = await server.wait_for_request("PATCH", rf"/guilds/{lumi.guild_id}/members/{alice.id}")
    assert timeout.json["communication_disabled_until"] and alice.communication_disabled_until
    assert "timed out for 60 min by" in answer
    assert (await case_number(lumi, 1)).action is CaseAction.TIMED_OUT

    # Back to the default thresholds: only the stored hash can catch the re-post now.
    await setup_moderation(lumi, reset=True)
    with Image.open(io.BytesIO(photo("astronaut"))) as image:
        again = corpus.encode(image.convert("RGB").resize((400, 400)), "JPEG", quality=75)
    since_messages = len(server.created_messages)
    repost = await server.post_message("general", "alice", attachments=[("again.jpg", again)])
    await server.wait_for_request(
        "DELETE", rf"/channels/{repost['channel_id']}/messages/{repost['id']}", timeout=WAIT_S
    )
    alert = await wait_for_alert(lumi, since_messages, "Case #2")
    assert "re-post of an image a moderator confirmed" in message_text(alert)
    case = await case_number(lumi, 2)
    assert (case.status, case.action) == (CaseStatus.AUTO_ACTIONED, CaseAction.DELETED)


async def test_missing_delete_permission_still_records_the_case(lumi: LumiHarness) -> None:
    server = lumi.server
    await setup_moderation(lumi, mod_channel="mod-log", review_threshold=0.0)
    server.fail_next("DELETE", r"/channels/\d+/messages/\d+", 403)
    since_messages = len(server.created_messages)
    post = await server.post_message("photos", "alice", attachments=[("rocket.jpg", photo("rocket"))])
    alert = await wait_for_alert(lumi, since_messages, "Case #1")
    text = message_text(alert)
    assert "cannot delete messages" in text and "alert only (post still up)" in text
    assert post["id"] in text  # the jump link, since the post is still up
    case = await case_number(lumi, 1)
    assert (case.status, case.action, case.evidence_key) == (CaseStatus.OPEN, CaseAction.ALERTED, None)

    status = await lumi.slash("moderation", subcommand="status", user="mod")
    assert "cannot delete messages" in message_text(status)


async def cases_by_message(lumi: LumiHarness, count: int, text: str) -> dict[int, ModerationCase]:
    """The guild's cases by message id, once ``count`` of them carry ``text`` in their reason."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        async with lumi.bot.runtime.database.session() as session:
            cases = await repo_cases.list_cases(session=session, guild_id=lumi.guild_id)
        found = {case.message_id: case for case in cases if case.message_id is not None}
        done = sum(text in case.reason for case in found.values()) >= count
        if done or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)


async def test_no_mod_channel_and_unreadable_files_never_crash(lumi: LumiHarness) -> None:
    server = lumi.server
    await setup_moderation(lumi, review_threshold=0.0)
    unreadable = await server.post_message(
        "photos",
        "alice",
        attachments=[
            ("bomb.png", corpus.png_declaring(1_000_000, 1_000_000)),
            ("notes.jpg", corpus.PLAIN_TEXT),
        ],
    )
    post = await server.post_message("photos", "alice", attachments=[("flower.jpg", photo("flower"))])
    await server.wait_for_request(
        "DELETE", rf"/channels/{post['channel_id']}/messages/{post['id']}", timeout=WAIT_S
    )
    cases = await cases_by_message(lumi, 2, "no moderation channel is set")
    flagged = cases[int(post["id"])]
    assert "no moderation channel is set" in flagged.reason
    assert (
        flagged.evidence_key is not None
    )  # held: the copy stays for a moderator to restore from /moderation
    # The bomb is an image too large to check: an alert was due, and it is recorded all the same.
    too_large = cases[int(unreadable["id"])]
    assert too_large.reason.startswith("image too large for Lumi to check")
    assert "no moderation channel is set" in too_large.reason
    assert too_large.action is CaseAction.ALERTED
    status = message_text(await lumi.slash("moderation", subcommand="status", user="mod"))
    assert "no moderation channel is set" in status and "Open cases\n2" in status


async def test_image_too_large_to_check_is_alerted_then_held(lumi: LumiHarness) -> None:
    server = lumi.server
    reply = await setup_moderation(lumi, mod_channel="mod-log")
    assert "images Lumi cannot check (too large or unreadable): alert the moderators" in reply
    huge = corpus.real_bilevel_png(10_000, 5_000)  # a few kilobytes; Discord shows it, Lumi cannot decode it
    since_messages = len(server.created_messages)
    post = await server.post_message("photos", "alice", attachments=[("huge.png", huge)])
    alert = await wait_for_alert(lumi, since_messages, "Case #1")
    text = message_text(alert)
    assert "image too large for Lumi to check (10000×5000 px); please look at it" in text
    assert "alert only (post still up)" in text and post["id"] in text
    assert [a["filename"] for a in alert["attachments"]] == ["SPOILER_huge.png"]
    assert {name: b["disabled"] for name, b in buttons(alert).items()} == {
        "confirm": False,
        "restore": True,
        "timeout": False,
        "dismiss": False,
    }
    assert not any(model.loaded for model in lumi.bot.runtime.registry.snapshot())

    reply = await setup_moderation(lumi, unchecked_action="hold")
    assert (
        "images Lumi cannot check (too large or unreadable): hold the post for review (alert only when "
        "over the download limit)" in reply
    )
    since_messages = len(server.created_messages)
    again = await server.post_message("photos", "alice", attachments=[("huge.png", huge)])
    await server.wait_for_request(
        "DELETE", rf"/channels/{again['channel_id']}/messages/{again['id']}", timeout=WAIT_S
    )
    alert = await wait_for_alert(lumi, since_messages, "Case #2")
    assert "held for review" in message_text(alert)
    assert buttons(alert)["restore"]["disabled"] is False
    case = await case_number(lumi, 2)
    assert (case.status, case.action) == (CaseStatus.OPEN, CaseAction.HELD) and case.evidence_key


async def test_edited_photos_are_flagged_and_damaged_images_alerted(lumi: LumiHarness) -> None:
    """A JPEG without its end marker is shown by every client: before, Lumi called it damaged and only
    logged it. Images Lumi cannot decode that Discord may show go to the moderators: a PNG cut short
    (its bytes start like an image) and a TIFF cut short (Discord's metadata gives it a size)."""
    server = lumi.server
    await setup_moderation(lumi, mod_channel="mod-log", review_threshold=0.0)
    since_messages = len(server.created_messages)
    await server.post_message("photos", "alice", attachments=[("rocket.jpg", photo("rocket")[:-2])])
    alert = await wait_for_alert(lumi, since_messages, "Case #1")
    assert "sexual_explicit" in message_text(alert)

    cut_png = corpus.encode(corpus.gradient(400, 300), "PNG")[:500]
    tiff = corpus.encode(corpus.gradient(400, 300), "TIFF")
    for number, (name, data, reason) in enumerate(
        [
            ("cut.png", cut_png, "PNG image Lumi could not read (damaged or incomplete, 400×300 px)"),
            (
                "cut.tiff",
                tiff[: len(tiff) // 2],
                "image Lumi could not read (damaged or incomplete, 400×300 px)",
            ),
        ],
        start=2,
    ):
        since_messages = len(server.created_messages)
        post = await server.post_message("photos", "alice", attachments=[(name, data)])
        alert = await wait_for_alert(lumi, since_messages, f"Case #{number}")
        text = message_text(alert)
        assert f"{reason}; please look at it" in text, text
        assert "alert only (post still up)" in text and post["id"] in text


async def test_image_too_large_to_download_is_alerted_and_later_posts_still_checked(
    lumi: LumiHarness,
) -> None:
    server = lumi.server
    await setup_moderation(lumi, mod_channel="mod-log", review_threshold=0.0)
    # Boosted servers take uploads over Lumi's 25 MB download limit; the attachment declares its size.
    poster = corpus.padded_to(corpus.encode(corpus.gradient(), "PNG"), 40 * 1024 * 1024)
    since_messages = len(server.created_messages)
    post = await server.post_message("photos", "alice", attachments=[("poster.png", poster)])
    assert post["attachments"][0]["size"] == 40 * 1024 * 1024
    alert = await wait_for_alert(lumi, since_messages, "Case #1")
    text = message_text(alert)
    assert (
        "image too large for Lumi to download (`poster.png`, 40 MB, limit 25 MB); please look at it" in text
    )
    assert "alert only (post still up)" in text and post["id"] in text and "no copy kept" in text
    assert alert["attachments"] == []
    assert {name: b["disabled"] for name, b in buttons(alert).items()} == {
        "confirm": False,
        "restore": True,
        "timeout": False,
        "dismiss": False,
    }
    assert not any(r.path.endswith("/poster.png") for r in server.rest.cdn_requests)

    since_messages = len(server.created_messages)
    later = await server.post_message("photos", "alice", attachments=[("cat.png", photo("chelsea"))])
    await server.wait_for_request(
        "DELETE", rf"/channels/{later['channel_id']}/messages/{later['id']}", timeout=WAIT_S
    )
    alert = await wait_for_alert(lumi, since_messages, "Case #2")
    assert "sexual_explicit" in message_text(alert)
    assert (await case_number(lumi, 1)).action is CaseAction.ALERTED


async def test_forget_scrubs_the_users_alerts(lumi: LumiHarness) -> None:
    server = lumi.server
    await setup_moderation(lumi, mod_channel="mod-log", review_threshold=0.0)
    since_messages = len(server.created_messages)
    await server.post_message("photos", "alice", attachments=[("c.jpg", photo("china"))])
    alert = await wait_for_alert(lumi, since_messages, "Case #1")
    assert alert["attachments"]
    assert (await wait_for_alert_recorded(lumi, 1)).alert_message_id == int(alert["id"])
    reply = await lumi.slash("moderation", subcommand="forget", user="owner", options={"user": "alice"})
    assert "1 case(s) anonymised" in message_text(reply) and "1 alert(s) scrubbed" in message_text(reply)
    assert alert["attachments"] == []
    assert "data deleted on request" in message_text(alert)
    case = await case_number(lumi, 1)
    assert (case.author_id, case.evidence_key) == (0, None)


async def test_cdn_links_and_image_embeds_are_checked_other_hosts_are_not(lumi: LumiHarness) -> None:
    server = lumi.server
    await setup_moderation(lumi, mod_channel="mod-log", review_threshold=0.0)
    photos = server.channel("photos")
    linked = server.host_file(photos.id, "linked.png", photo("rocket"))
    embedded = server.host_file(photos.id, "embedded.jpg", photo("bus"))
    since_messages = len(server.created_messages)
    post = await server.post_message(
        "photos",
        "alice",
        f"look {linked['url']} and https://example.org/elsewhere.png",
        embeds=[{"type": "image", "url": embedded["url"], "thumbnail": {"url": embedded["url"]}}],
    )
    alert = await wait_for_alert(lumi, since_messages, "Case #1")
    fetched = sorted(r.path.rsplit("/", 1)[-1] for r in server.rest.cdn_requests)
    assert fetched == ["embedded.jpg", "linked.png"]
    assert len(alert["attachments"]) == 1
    await server.wait_for_request("DELETE", rf"/channels/{photos.id}/messages/{post['id']}", timeout=WAIT_S)


async def test_images_past_the_per_post_limit_are_alerted_not_skipped(make_lumi: Any) -> None:
    lumi = await make_lumi(moderation_max_images_per_message=2)
    server = lumi.server
    await setup_moderation(lumi, mod_channel="mod-log")
    safe = [(f"safe{i}.png", photo("rocket")) for i in range(2)]
    since_messages = len(server.created_messages)
    post = await server.post_message("photos", "alice", attachments=[*safe, ("third.png", photo("chelsea"))])
    alert = await wait_for_alert(lumi, since_messages, "Case #1")
    text = message_text(alert)
    assert "image past the first 2 of the post not checked (`third.png`); please look at it" in text
    assert "alert only (post still up)" in text and post["id"] in text
    fetched = sorted(r.path.rsplit("/", 1)[-1] for r in server.rest.cdn_requests)
    assert fetched == ["safe0.png", "safe1.png"]
    case = await case_number(lumi, 1)
    assert (case.status, case.action) == (CaseStatus.OPEN, CaseAction.ALERTED)
