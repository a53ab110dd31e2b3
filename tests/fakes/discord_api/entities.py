"""The fake Discord's world objects (users, roles, channels, members, the guild) and their JSON payloads.

Payload shapes follow Discord's API v10 documentation closely enough that discord.py parses them the way it
parses the real service's data: numeric snowflakes as strings, ISO 8601 timestamps, permission bit sets as
decimal strings. The guild also does Discord's permission arithmetic, channel overwrites included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.fakes.discord_api.protocol import ALL_PERMISSIONS, ChannelType, JsonDict, Perm, now_iso


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


# How tests name users and channels: by name or id, or the object itself.
UserRef = str | FakeUser | FakeMember
ChannelRef = str | int | FakeChannel
