"""Photo comments end to end: real discord.py client, real models, real SQLite, the local Discord server.

Without YOLO weights (none can be downloaded here) comments come from faces and emotions: the
astronaut smiles, so her photo is labelled 기쁨. A photo is flagged the way the moderation tests do it:
`/moderation setup` with a review threshold of 0.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlmodel import select

from storage.models import CommentRecord
from tests.e2e.conftest import LumiHarness
from tests.fakes import images as corpus
from tests.fakes.discord_api.protocol import JsonDict
from tests.fakes.discord_api.server import message_text

pytestmark = pytest.mark.e2e

WAIT_S = 90.0  # the first photo loads the moderation, face and emotion models on a busy 2-core machine
# No weight downloads during tests; objects are simply absent.
NO_DOWNLOADS = {"comment_objects_download": False}


def photo(name: str) -> bytes:
    data = corpus.photo_bytes(name)
    if data is None:
        pytest.skip(f"the package that ships the {name} photo is not installed")
    return data


def replies_to(post: JsonDict) -> Any:
    return lambda message: (message.get("message_reference") or {}).get("message_id") == post["id"]


async def records(lumi: LumiHarness) -> list[CommentRecord]:
    async with lumi.bot.runtime.database.session() as session:
        return list((await session.exec(select(CommentRecord))).all())


async def settle(lumi: LumiHarness) -> None:
    """Wait until every photo post Lumi is commenting on has been dealt with."""
    cog: Any = lumi.bot.get_cog("Comments")
    assert cog is not None, lumi.bot.failed_extensions
    await cog.drain(timeout=WAIT_S)


async def test_enabled_channel_gets_one_comment_per_post_and_other_channels_none(make_lumi: Any) -> None:
    lumi: LumiHarness = await make_lumi(**NO_DOWNLOADS)
    server = lumi.server
    answer = await lumi.slash("comments", subcommand="enable", user="owner", channel="photos")
    photos_id = server.channel("photos").id
    assert f"now comments on photos in <#{photos_id}>" in message_text(answer) and answer["flags"] & 64
    refused = await lumi.slash("comments", subcommand="enable", user="alice", channel="general")
    assert "manage_guild" in message_text(refused)

    elsewhere = await server.post_message("general", "alice", attachments=[("me.png", photo("astronaut"))])
    post = await server.post_message(
        "photos",
        "alice",
        "우주에서 한 장!",
        attachments=[("me.png", photo("astronaut")), ("cup.png", photo("coffee"))],
    )
    comment = await server.wait_for_message("photos", predicate=replies_to(post), timeout=WAIT_S)
    await settle(lumi)

    text = message_text(comment)
    assert text.strip() and "@" not in text
    bot_messages = [m for m in server.created_messages if m["author"]["id"] == str(server.bot_user.id)]
    assert [m for m in bot_messages if replies_to(post)(m)] == [comment]  # one comment for two images
    assert not [m for m in bot_messages if replies_to(elsewhere)(m)]
    (record,) = await records(lumi)
    assert (record.message_id, record.channel_id, record.language) == (int(post["id"]), photos_id, "ko")
    assert record.labels == ["기쁨"] and record.comment == text
    assert record.backend in ("local", "template") and record.latency_ms > 0

    # The cooldown holds the next photo in the same channel back.
    again = await server.post_message("photos", "alice", attachments=[("me.png", photo("astronaut"))])
    # Moderation downloading the photo shows that Lumi has received the post.
    attachment_path = urlsplit(again["attachments"][0]["url"]).path
    await server.rest.cdn_requests.wait_for(
        lambda request: request.path == attachment_path, timeout=WAIT_S, describe="the photo's download"
    )
    await settle(lumi)
    assert not [m for m in server.created_messages if replies_to(again)(m)]

    answer = await lumi.slash("comments", subcommand="disable", user="owner", channel="photos")
    assert "no longer comments" in message_text(answer)
    status = message_text(await lumi.slash("comments", subcommand="status", user="owner"))
    assert "none yet" in status and "Cooldown: 30 s" in status


async def test_flagged_photo_gets_no_comment(make_lumi: Any) -> None:
    lumi: LumiHarness = await make_lumi(**NO_DOWNLOADS)
    server = lumi.server
    await lumi.slash("comments", subcommand="enable", user="owner", channel="photos")
    await lumi.slash("comments", subcommand="settings", user="owner", options={"cooldown": 0})
    interaction = await server.slash_command(
        "moderation",
        subcommand="setup",
        user="owner",
        options={"mod_channel": "mod-log", "review_threshold": 0.0},
    )
    await server.wait_for_reply(interaction, timeout=WAIT_S)

    since = len(server.created_messages)
    post = await server.post_message("photos", "alice", attachments=[("me.png", photo("astronaut"))])
    await server.wait_for_message(
        "mod-log",
        since=since,
        predicate=lambda m: bool(m["embeds"]) and m["embeds"][0].get("title", "").startswith("Case #1"),
        timeout=WAIT_S,
    )
    await settle(lumi)
    assert not [m for m in server.created_messages if replies_to(post)(m)]
    assert await records(lumi) == []


async def test_comment_command_and_context_menu_answer_on_request(make_lumi: Any) -> None:
    lumi: LumiHarness = await make_lumi(**NO_DOWNLOADS)
    server = lumi.server
    await lumi.slash(
        "comments", subcommand="settings", user="owner", options={"language": "en", "backend": "template"}
    )

    interaction = await server.slash_command(
        "comment", user="alice", options={"image": ("me.png", photo("astronaut")), "private": True}
    )
    reply = await server.wait_for_reply(interaction, timeout=WAIT_S)
    text = message_text(reply)
    assert reply["flags"] & 64 and "joy · template ·" in text and not has_hangul(text)

    post = await server.post_message("general", "mod", attachments=[("cup.png", photo("coffee"))])
    interaction = await server.message_context_command("Comment on this photo", post, user="alice")
    answer = await server.wait_for_reply(interaction, timeout=WAIT_S)
    assert answer["flags"] & 64 and "no face or object" in message_text(answer)
    assert await records(lumi) == []  # comments on request are not posts Lumi commented on


def has_hangul(text: str) -> bool:
    return any("가" <= char <= "힣" for char in text)


async def test_post_with_a_photo_too_large_to_download_gets_no_comment(make_lumi: Any) -> None:
    lumi: LumiHarness = await make_lumi(**NO_DOWNLOADS)
    server = lumi.server
    await lumi.slash("comments", subcommand="enable", user="owner", channel="photos")
    interaction = await server.slash_command(
        "moderation", subcommand="setup", user="owner", options={"mod_channel": "mod-log"}
    )
    await server.wait_for_reply(interaction, timeout=WAIT_S)

    # The astronaut alone would get a comment; beside a photo over the 25 MB limit, the post gets none.
    poster = corpus.padded_to(corpus.encode(corpus.gradient(), "PNG"), 40 * 1024 * 1024)
    since = len(server.created_messages)
    post = await server.post_message(
        "photos", "alice", attachments=[("me.png", photo("astronaut")), ("poster.png", poster)]
    )
    alert = await server.wait_for_message(
        "mod-log",
        since=since,
        predicate=lambda m: bool(m["embeds"]) and m["embeds"][0].get("title", "").startswith("Case #1"),
        timeout=WAIT_S,
    )
    assert "too large for Lumi to download" in message_text(alert)
    await settle(lumi)
    assert not [m for m in server.created_messages if replies_to(post)(m)]
    assert await records(lumi) == []


async def test_a_commented_photo_is_downloaded_once(make_lumi: Any) -> None:
    """Moderation and comments both answer a photo post; the comment uses the photo moderation downloaded
    (handed over with its verdict), so Discord's CDN serves the attachment once."""
    lumi: LumiHarness = await make_lumi(**NO_DOWNLOADS)
    server = lumi.server
    await lumi.slash("comments", subcommand="enable", user="owner", channel="photos")
    await lumi.slash("comments", subcommand="settings", user="owner", options={"cooldown": 0})

    def fetches_of(post: JsonDict) -> int:
        path = urlsplit(post["attachments"][0]["url"]).path
        return sum(1 for request in server.rest.cdn_requests if request.path == path)

    post = await server.post_message("photos", "alice", attachments=[("me.png", photo("astronaut"))])
    await server.wait_for_message("photos", predicate=replies_to(post), timeout=WAIT_S)
    await settle(lumi)
    # Moderation did screen the post (its verdict is there), and the photo was fetched once in all.
    verdict = await lumi.bot.runtime.moderation.verdict_feed.wait(
        int(post["id"]), timeout_s=0, new_post=False
    )
    assert verdict is not None and not verdict.flagged and len(verdict.images) == 1
    assert fetches_of(post) == 1

    # With moderation off in this server, it downloads nothing and comments fetch the photo once themselves.
    interaction = await server.slash_command(
        "moderation", subcommand="setup", user="owner", options={"enabled": False}
    )
    await server.wait_for_reply(interaction, timeout=WAIT_S)
    again = await server.post_message("photos", "alice", attachments=[("me.png", photo("astronaut"))])
    await server.wait_for_message("photos", predicate=replies_to(again), timeout=WAIT_S)
    await settle(lumi)
    assert fetches_of(again) == 1
