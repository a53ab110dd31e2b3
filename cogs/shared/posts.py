"""Reading a Discord message into the post the services take: the one place that decides what an image is.

Both listeners (moderation and photo comments) call `read_post` on the same message, so they see the same
image sources (attachments, embeds, image links) and the same channel, thread parent, roles and
age-restriction. Which of those sources are worth downloading (allowed hosts, the per-post limit) is
the services' call, not Discord's.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any, Final
from urllib.parse import urlsplit

import discord

from bot.services.posts import ImageSource, IncomingPost, PostPlace

__all__ = ["IMAGE_EXTENSIONS", "has_image_extension", "image_sources", "read_place", "read_post"]

IMAGE_EXTENSIONS: Final = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
_URL: Final = re.compile(r"https?://[^\s<>\"')]+")


def has_image_extension(name: str) -> bool:
    return PurePosixPath(name.lower()).suffix in IMAGE_EXTENSIONS


def read_post(message: discord.Message) -> IncomingPost:
    """The post the services take for ``message``: where it is, who wrote it, which images it shows."""
    return IncomingPost(
        guild_id=message.guild.id if message.guild is not None else None,
        channel_id=message.channel.id,
        message_id=message.id,
        author_id=message.author.id,
        place=read_place(message.channel, message.author),
        sources=tuple(image_sources(message)),
        channel_name=str(message.channel),
    )


def read_place(channel: Any, author: Any) -> PostPlace:
    """Where something is posted (a message, or a command's channel) and by whom, for the exemptions."""
    parent_id = getattr(channel, "parent_id", None)
    if isinstance(channel, discord.Thread) and parent_id is not None:
        channel_ids: tuple[int, ...] = (channel.id, parent_id)
    else:
        channel_ids = (channel.id,)
    return PostPlace(
        channel_ids=channel_ids,
        channel_nsfw=bool(getattr(channel, "is_nsfw", lambda: False)()),
        role_ids=tuple(role.id for role in getattr(author, "roles", [])),
    )


def image_sources(message: discord.Message) -> list[ImageSource]:
    """The images a message shows: image attachments, then image embeds, then links to image files."""
    sources: list[ImageSource] = []
    for attachment in message.attachments:
        content_type = (attachment.content_type or "").split(";")[0].strip().lower()
        if content_type.startswith(("video/", "audio/")):
            continue
        if content_type.startswith("image/") or has_image_extension(attachment.filename):
            dimensions = (
                (attachment.width, attachment.height)
                if attachment.width is not None and attachment.height is not None
                else None
            )
            sources.append(
                ImageSource(
                    attachment.url,
                    attachment.filename,
                    attachment.size,
                    attached=True,
                    declared_type=attachment.content_type,
                    declared_dimensions=dimensions,
                )
            )
    for embed in message.embeds:
        for url in (embed.image.url, embed.thumbnail.url, embed.url if embed.type == "image" else None):
            if url:
                sources.append(ImageSource(url, _name_from_url(url)))
    for url in _URL.findall(message.content or ""):
        if has_image_extension(urlsplit(url).path):
            sources.append(ImageSource(url, _name_from_url(url)))
    return sources


def _name_from_url(url: str) -> str:
    return PurePosixPath(urlsplit(url).path).name or "image"
