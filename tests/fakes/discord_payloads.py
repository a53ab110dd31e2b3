"""The fake Discord's world (users, guild, channels, roles, members) and the JSON payloads Discord sends.

Payload shapes follow Discord's API v10 documentation closely enough that discord.py parses them the way it
parses the real service's data: numeric snowflakes as strings, ISO 8601 timestamps, permission bit sets as
decimal strings.
"""

from __future__ import annotations

import io
import mimetypes
import re
import struct
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, IntFlag
from typing import Any

JsonDict = dict[str, Any]

DISCORD_EPOCH_MS = 1_420_070_400_000
DEFAULT_ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024


class Perm(IntFlag):
    """Permission bits that Lumi's features care about (Discord API "Permissions" table)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_AUDIT_LOG = 1 << 7
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CHANGE_NICKNAME = 1 << 26
    MANAGE_ROLES = 1 << 28
    USE_APPLICATION_COMMANDS = 1 << 31
    SEND_MESSAGES_IN_THREADS = 1 << 38
    MODERATE_MEMBERS = 1 << 40


ALL_PERMISSIONS = (1 << 51) - 1
EVERYONE_PERMISSIONS = (
    Perm.CREATE_INSTANT_INVITE
    | Perm.ADD_REACTIONS
    | Perm.VIEW_CHANNEL
    | Perm.SEND_MESSAGES
    | Perm.EMBED_LINKS
    | Perm.ATTACH_FILES
    | Perm.READ_MESSAGE_HISTORY
    | Perm.USE_EXTERNAL_EMOJIS
    | Perm.CHANGE_NICKNAME
    | Perm.USE_APPLICATION_COMMANDS
    | Perm.SEND_MESSAGES_IN_THREADS
)
MODERATOR_PERMISSIONS = (
    EVERYONE_PERMISSIONS | Perm.MANAGE_MESSAGES | Perm.MODERATE_MEMBERS | Perm.KICK_MEMBERS
)
BOT_PERMISSIONS = MODERATOR_PERMISSIONS


class Intent(IntFlag):
    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    MESSAGE_CONTENT = 1 << 15


class ChannelType(IntEnum):
    GUILD_TEXT = 0
    DM = 1
    GUILD_CATEGORY = 4


class InteractionType(IntEnum):
    PING = 1
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class OptionType(IntEnum):
    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


class MessageFlag(IntFlag):
    SUPPRESS_EMBEDS = 1 << 2
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class SnowflakeFactory:
    """Snowflakes carry their creation time like Discord's, and are unique and increasing."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(candidate, self._last + 1)
        return self._last


@dataclass
class FakeUser:
    id: int
    username: str
    bot: bool = False
    global_name: str | None = None

    def payload(self) -> JsonDict:
        data: JsonDict = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "public_flags": 0,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class FakeRole:
    id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False

    def payload(self) -> JsonDict:
        return {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class PermissionOverwrite:
    id: int
    type: int  # 0 = role, 1 = member
    allow: int = 0
    deny: int = 0

    def payload(self) -> JsonDict:
        return {"id": str(self.id), "type": self.type, "allow": str(self.allow), "deny": str(self.deny)}


@dataclass
class FakeChannel:
    id: int
    name: str
    type: int = ChannelType.GUILD_TEXT
    guild_id: int | None = None
    nsfw: bool = False
    position: int = 0
    topic: str | None = None
    parent_id: int | None = None
    overwrites: list[PermissionOverwrite] = field(default_factory=list)
    recipients: list[FakeUser] = field(default_factory=list)

    def payload(self) -> JsonDict:
        if self.type == ChannelType.DM:
            return {
                "id": str(self.id),
                "type": self.type,
                "last_message_id": None,
                "flags": 0,
                "recipients": [user.payload() for user in self.recipients],
            }
        data: JsonDict = {
            "id": str(self.id),
            "type": self.type,
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [overwrite.payload() for overwrite in self.overwrites],
            "nsfw": self.nsfw,
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "flags": 0,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.type == ChannelType.GUILD_TEXT:
            data.update(topic=self.topic, last_message_id=None, rate_limit_per_user=0)
        return data


@dataclass
class FakeMember:
    user: FakeUser
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=now_iso)
    communication_disabled_until: str | None = None

    @property
    def id(self) -> int:
        return self.user.id

    def payload(self, *, with_user: bool = True, permissions: int | None = None) -> JsonDict:
        data: JsonDict = {
            "roles": [str(role_id) for role_id in self.role_ids],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": self.communication_disabled_until,
        }
        if with_user:
            data["user"] = self.user.payload()
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass
class FakeGuild:
    id: int
    name: str
    owner_id: int
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    roles: dict[int, FakeRole] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)

    @property
    def everyone(self) -> FakeRole:
        return self.roles[self.id]

    def channel_named(self, name: str) -> FakeChannel:
        for channel in self.channels.values():
            if channel.name == name.lstrip("#"):
                return channel
        raise KeyError(f"no channel named {name!r} in guild {self.name!r}")

    def role_named(self, name: str) -> FakeRole:
        for role in self.roles.values():
            if role.name == name:
                return role
        raise KeyError(f"no role named {name!r} in guild {self.name!r}")

    def member_named(self, name: str) -> FakeMember:
        for member in self.members.values():
            if member.user.username == name:
                return member
        raise KeyError(f"no member named {name!r} in guild {self.name!r}")

    def base_permissions(self, member: FakeMember) -> int:
        if member.id == self.owner_id:
            return ALL_PERMISSIONS
        permissions = self.everyone.permissions
        for role_id in member.role_ids:
            role = self.roles.get(role_id)
            if role is not None:
                permissions |= role.permissions
        return ALL_PERMISSIONS if permissions & Perm.ADMINISTRATOR else permissions

    def permissions_in(self, member: FakeMember, channel: FakeChannel | None) -> int:
        """Discord's overwrite order: @everyone, then all member roles together, then the member."""
        permissions = self.base_permissions(member)
        if channel is None or permissions & Perm.ADMINISTRATOR:
            return permissions
        by_id = {overwrite.id: overwrite for overwrite in channel.overwrites}
        everyone = by_id.get(self.id)
        if everyone is not None:
            permissions = (permissions & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role_id in member.role_ids:
            overwrite = by_id.get(role_id)
            if overwrite is not None and overwrite.type == 0:
                allow |= overwrite.allow
                deny |= overwrite.deny
        permissions = (permissions & ~deny) | allow
        own = by_id.get(member.id)
        if own is not None and own.type == 1:
            permissions = (permissions & ~own.deny) | own.allow
        return permissions

    def create_payload(self) -> JsonDict:
        """GUILD_CREATE data: the full guild, as sent once after READY."""
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "features": [],
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "roles": [role.payload() for role in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "soundboard_sounds": [],
            "joined_at": now_iso(),
            "large": False,
            "unavailable": False,
            # Equal to the member list, so discord.py treats the guild as fully chunked.
            "member_count": len(self.members),
            "voice_states": [],
            "members": [member.payload() for member in self.members.values()],
            "channels": [channel.payload() for channel in self.channels.values()],
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
        }


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


# How tests name things: a file as (filename, bytes[, content_type]); users and channels by name or object.
FileSpec = tuple[str, bytes] | tuple[str, bytes, str]
UserRef = str | FakeUser | FakeMember
ChannelRef = str | int | FakeChannel
