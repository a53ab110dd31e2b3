"""`read_post` on messages a real discord.py client receives from the local Discord-compatible server: one
list of image sources and one reading of channel, thread parent, roles and age-restriction, shared by the
moderation and photo-comment listeners."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import discord

from bot.services.posts import ImageSource, IncomingPost, PostPlace
from cogs.shared.posts import has_image_extension, read_place, read_post
from tests.cogs.conftest import MessageListener
from tests.fakes.discord_api.payloads import tiny_png
from tests.fakes.discord_api.server import FakeDiscord

PNG = tiny_png()


async def test_sources_are_image_attachments_then_embeds_then_image_links(
    fake_discord: FakeDiscord, listener: MessageListener
) -> None:
    embed_image = "https://media.discordapp.net/attachments/1/2/shared.png?ex=1"
    embeds = [
        {
            "type": "rich",
            "image": {"url": embed_image},
            "thumbnail": {"url": "https://cdn.discordapp.com/t.webp"},
        },
        {"type": "image", "url": "https://cdn.discordapp.com/attachments/1/3/plain.gif"},
    ]
    posted = await fake_discord.post_message(
        "photos",
        "alice",
        "look https://cdn.discordapp.com/attachments/1/4/link.JPG and https://example.com/page.html",
        attachments=[
            ("cat.png", PNG),
            ("scan.tif", PNG, "application/octet-stream"),  # no image type, but an image name
            ("clip.gif", PNG, "video/mp4"),  # Discord says video: not an image
            ("notes.txt", b"hello", "text/plain"),
            ("photo", PNG, "image/jpeg"),  # no extension, but an image type
        ],
        embeds=embeds,
    )
    message = await listener.next_message()
    post = read_post(message)

    attachments = posted["attachments"]

    def uploaded(attachment: dict[str, Any], name: str) -> ImageSource:
        # Discord's metadata travels with an attachment, so an image Lumi cannot decode is still alerted.
        size = (attachment["width"], attachment["height"]) if attachment.get("width") is not None else None
        return ImageSource(
            attachment["url"],
            name,
            len(PNG),
            attached=True,
            declared_type=attachment.get("content_type"),
            declared_dimensions=size,
        )

    assert post.sources[0].declared_dimensions is not None
    assert post.sources == (
        uploaded(attachments[0], "cat.png"),
        uploaded(attachments[1], "scan.tif"),
        uploaded(attachments[4], "photo"),
        ImageSource(embed_image, "shared.png"),
        ImageSource("https://cdn.discordapp.com/t.webp", "t.webp"),
        ImageSource("https://cdn.discordapp.com/attachments/1/3/plain.gif", "plain.gif"),
        ImageSource("https://cdn.discordapp.com/attachments/1/4/link.JPG", "link.JPG"),
    )
    assert [source.filename for source in post.attachments] == ["cat.png", "scan.tif", "photo"]
    photos = fake_discord.channel("photos")
    assert (post.guild_id, post.channel_id, post.message_id) == (
        fake_discord.guild.id,
        photos.id,
        int(posted["id"]),
    )
    assert post.author_id == fake_discord.member("alice").user.id
    assert post.channel_name == "photos"
    # Every member has @everyone, whose id is the guild's.
    assert post.place == PostPlace(
        channel_ids=(photos.id,), channel_nsfw=False, role_ids=(fake_discord.guild.id,)
    )


async def test_the_place_names_roles_and_age_restriction(
    fake_discord: FakeDiscord, listener: MessageListener
) -> None:
    await fake_discord.post_message("nsfw", "mod", attachments=[("a.png", PNG)])
    post = read_post(await listener.next_message())
    nsfw = fake_discord.channel("nsfw")
    assert post.place == PostPlace(
        channel_ids=(nsfw.id,),
        channel_nsfw=True,
        role_ids=(fake_discord.guild.id, fake_discord.moderator_role.id),
    )
    # A text-only message has no sources, and nothing else is lost.
    await fake_discord.post_message("general", "alice", "no pictures here http://cdn.discordapp.com/")
    text_only = read_post(await listener.next_message())
    assert text_only.sources == () and text_only.attachments == []


async def test_a_thread_counts_as_its_parent_channel_too(
    fake_discord: FakeDiscord, listener: MessageListener
) -> None:
    guild = listener.get_guild(fake_discord.guild.id)
    assert guild is not None
    parent = fake_discord.channel("nsfw")
    thread_id = fake_discord.snowflakes.next()
    # The fake has no threads; discord.py builds this one from the payload Discord would send.
    thread = discord.Thread(
        guild=guild,
        state=listener._connection,
        data={
            "id": str(thread_id),
            "guild_id": str(guild.id),
            "parent_id": str(parent.id),
            "owner_id": str(fake_discord.owner.id),
            "name": "side chat",
            "type": 11,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": datetime.now(UTC).isoformat(),
                "locked": False,
            },
        },
    )
    await fake_discord.post_message("general", "mod", "hi")
    author = (await listener.next_message()).author
    place = read_place(thread, author)
    # The thread takes its parent's age-restriction, and settings made on the parent cover it.
    assert place == PostPlace(
        channel_ids=(thread_id, parent.id),
        channel_nsfw=True,
        role_ids=(guild.id, fake_discord.moderator_role.id),
    )


def test_fetchable_sources_are_on_allowed_hosts_and_each_file_once() -> None:
    first = ImageSource("https://cdn.discordapp.com/attachments/1/2/a.png?ex=1", "a.png", 10, attached=True)
    same_file = ImageSource("https://media.discordapp.net/attachments/1/2/a.png?ex=2", "a.png")
    elsewhere = ImageSource("https://example.com/attachments/1/9/b.png", "b.png")
    other = ImageSource("https://cdn.discordapp.com/attachments/1/3/c.png", "c.png")
    post = IncomingPost(
        guild_id=1,
        channel_id=2,
        message_id=3,
        author_id=4,
        place=PostPlace((2,)),
        sources=(first, same_file, elsewhere, other),
    )
    allowed = {"cdn.discordapp.com", "media.discordapp.net"}
    assert post.fetchable(lambda url: urlsplit(url).hostname in allowed) == [first, other]
    # A copy on a host Lumi does not fetch from, listed first, does not hide the allowed one.
    copy_elsewhere = ImageSource("https://example.com/attachments/1/2/a.png", "a.png")
    post = IncomingPost(1, 2, 3, 4, PostPlace((2,)), sources=(copy_elsewhere, same_file))
    assert post.fetchable(lambda url: urlsplit(url).hostname in allowed) == [same_file]


def test_one_extension_set_for_every_image_name() -> None:
    for name in ("a.PNG", "b.jpe", "c.tiff", "d.heic", "e.avif", "f.webp"):
        assert has_image_extension(name), name
    for name in ("a.mp4", "b.txt", "c", "png"):
        assert not has_image_extension(name), name
