"""Message and attachment payloads of the fake Discord, and the files its CDN serves.

Shapes follow Discord's API v10 documentation (string snowflakes, ISO 8601 timestamps). Also here: how a
message reads as text for assertions, and a tiny PNG built without an image library.
"""

from __future__ import annotations

import io
import mimetypes
import re
import struct
import zlib
from dataclasses import dataclass

from tests.fakes.discord_api.entities import FakeChannel, FakeMember, FakeUser
from tests.fakes.discord_api.protocol import JsonDict, now_iso

DEFAULT_ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024


def tiny_png() -> bytes:
    """A valid 1x1 transparent PNG, built here so that no image library is needed to make one."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00\x00\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def guess_content_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height as Discord reports them for images; None when the bytes are not a readable image."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        # Hostile or truncated uploads are legitimate test input; Discord just omits the size for them.
        return None


@dataclass
class HostedFile:
    """Bytes served by the fake CDN under `path`."""

    path: str
    data: bytes
    content_type: str


def attachment_payload(
    attachment_id: int,
    filename: str,
    data: bytes,
    content_type: str,
    *,
    url: str,
    proxy_url: str,
    description: str | None = None,
    ephemeral: bool = False,
) -> JsonDict:
    payload: JsonDict = {
        "id": str(attachment_id),
        "filename": filename,
        "size": len(data),
        "url": url,
        "proxy_url": proxy_url,
        "content_type": content_type,
    }
    if description:
        payload["description"] = description
    if ephemeral:
        payload["ephemeral"] = True
    if content_type.startswith("image/"):
        size = image_size(data)
        if size is not None:
            payload["width"], payload["height"] = size
    return payload


USER_MENTION = re.compile(r"<@!?(\d+)>")


def message_payload(
    *,
    message_id: int,
    channel: FakeChannel,
    author: FakeUser,
    member: FakeMember | None,
    content: str = "",
    attachments: list[JsonDict] | None = None,
    embeds: list[JsonDict] | None = None,
    components: list[JsonDict] | None = None,
    flags: int = 0,
    message_type: int = 0,
    mentions: list[FakeUser] | None = None,
    extra: JsonDict | None = None,
) -> JsonDict:
    data: JsonDict = {
        "id": str(message_id),
        "channel_id": str(channel.id),
        "author": author.payload(),
        "content": content,
        "timestamp": now_iso(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [user.payload() for user in mentions or []],
        "mention_roles": [],
        "attachments": attachments or [],
        "embeds": embeds or [],
        "components": components or [],
        "reactions": [],
        "pinned": False,
        "type": message_type,
        "flags": flags,
    }
    if channel.guild_id is not None:
        data["guild_id"] = str(channel.guild_id)
        if member is not None:
            data["member"] = member.payload(with_user=False)
    if extra:
        data.update(extra)
    return data


def message_text(message: JsonDict) -> str:
    """Everything a reader sees in a message, as one string: content, then each embed's text and fields."""
    parts = [message.get("content") or ""]
    for embed in message.get("embeds", []):
        parts += [embed.get(key) or "" for key in ("title", "description")]
        for embed_field in embed.get("fields", []):
            parts += [embed_field.get("name", ""), embed_field.get("value", "")]
        parts += [(embed.get("footer") or {}).get("text", ""), (embed.get("author") or {}).get("name", "")]
    return "\n".join(part for part in parts if part)


def summarize_message(message: JsonDict) -> str:
    extras = [f"{len(message[key])} {key}" for key in ("embeds", "attachments", "components") if message[key]]
    return (
        f"message {message['id']} in {message['channel_id']} by {message['author']['username']}: "
        f"{message['content']!r} flags={message['flags']} {' '.join(extras)}"
    )


def mentioned_ids(content: str) -> list[str]:
    return USER_MENTION.findall(content or "")


# How tests name a file: (filename, bytes[, content_type]).
FileSpec = tuple[str, bytes] | tuple[str, bytes, str]
