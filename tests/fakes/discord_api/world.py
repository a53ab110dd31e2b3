"""The fake Discord's world: one application and its bot user, one guild with channels, roles and members,
and the stores that the REST and gateway sides share. `FakeDiscord` builds on it.

The default guild has text channels `general`, `photos`, `mod-log` and an NSFW `nsfw`; roles `@everyone`,
`Moderator` (manage messages, timeout members) and the bot's managed `Lumi` role; members `owner`, `alice`,
`mod` (a Moderator) and the bot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.discord_api.entities import (
    ChannelRef,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    PermissionOverwrite,
    UserRef,
)
from tests.fakes.discord_api.payloads import HostedFile, summarize_message, tiny_png
from tests.fakes.discord_api.protocol import (
    BOT_PERMISSIONS,
    EVERYONE_PERMISSIONS,
    MODERATOR_PERMISSIONS,
    ChannelType,
    JsonDict,
    SnowflakeFactory,
)
from tests.fakes.discord_api.recording import ApiError, ObservedList, RecordedRequest


@dataclass
class InteractionRecord:
    """Server-side memory of one interaction: who answered it how, and which messages it produced."""

    id: int
    token: str
    type: int
    payload: JsonDict
    channel: FakeChannel
    user: FakeUser
    created: float
    source_message: JsonDict | None = None
    response_type: int | None = None
    original_message_id: int | None = None
    callbacks: list[RecordedRequest] = field(default_factory=list)
    followups: list[RecordedRequest] = field(default_factory=list)
    replies: list[JsonDict] = field(default_factory=list)


class DiscordWorld:
    def __init__(self) -> None:
        self.snowflakes = SnowflakeFactory()
        self.placeholder_png = tiny_png()
        self.application_id = self.snowflakes.next()
        # Bot users of modern applications share the application's id.
        self.bot_user = FakeUser(self.application_id, "Lumi", bot=True)
        self.owner = FakeUser(self.snowflakes.next(), "owner")
        self.users: dict[int, FakeUser] = {user.id: user for user in (self.bot_user, self.owner)}
        self.guild = self._build_guild()
        self.messages: dict[int, list[JsonDict]] = {}
        self.messages_by_id: dict[int, JsonDict] = {}
        self.created_messages: ObservedList[JsonDict] = ObservedList(summarize=summarize_message)
        self.deleted_messages: list[JsonDict] = []
        self.hosted_files: dict[str, HostedFile] = {}
        self.commands: dict[int | None, list[JsonDict]] = {}
        self.interactions: dict[int, InteractionRecord] = {}
        self.interactions_by_token: dict[str, InteractionRecord] = {}
        self.dm_channels: dict[int, FakeChannel] = {}
        self.bans: dict[int, JsonDict] = {}

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    @property
    def gateway_url(self) -> str:
        raise NotImplementedError

    async def dispatch(self, event: str, data: Any) -> None:
        """Send a gateway event to every identified client session."""
        raise NotImplementedError

    def _build_guild(self) -> FakeGuild:
        guild_id = self.snowflakes.next()
        guild = FakeGuild(id=guild_id, name="Lumi Test Guild", owner_id=self.owner.id)
        guild.roles[guild_id] = FakeRole(guild_id, "@everyone", int(EVERYONE_PERMISSIONS))
        self.moderator_role = self.add_role("Moderator", int(MODERATOR_PERMISSIONS), guild=guild, position=1)
        self.bot_role = self.add_role("Lumi", int(BOT_PERMISSIONS), guild=guild, position=2, managed=True)
        for name, nsfw in (("general", False), ("photos", False), ("mod-log", False), ("nsfw", True)):
            channel_id = self.snowflakes.next()
            guild.channels[channel_id] = FakeChannel(
                channel_id, name, guild_id=guild_id, nsfw=nsfw, position=len(guild.channels)
            )
        for user, roles in (
            (self.bot_user, [self.bot_role.id]),
            (self.owner, []),
            (FakeUser(self.snowflakes.next(), "alice", global_name="Alice"), []),
            (FakeUser(self.snowflakes.next(), "mod", global_name="Mod"), [self.moderator_role.id]),
        ):
            self.users[user.id] = user
            guild.members[user.id] = FakeMember(user, roles)
        return guild

    def channel(self, ref: ChannelRef) -> FakeChannel:
        if isinstance(ref, FakeChannel):
            return ref
        if isinstance(ref, int):
            return self.channel_by_id(ref)
        return self.guild.channel_named(ref)

    def channel_by_id(self, channel_id: int) -> FakeChannel:
        channel = self.guild.channels.get(channel_id)
        if channel is None:
            channel = next((dm for dm in self.dm_channels.values() if dm.id == channel_id), None)
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        return channel

    def member(self, ref: UserRef) -> FakeMember:
        if isinstance(ref, FakeMember):
            return ref
        if isinstance(ref, FakeUser):
            return self.guild.members[ref.id]
        return self.guild.member_named(ref)

    def user(self, ref: UserRef) -> FakeUser:
        if isinstance(ref, FakeUser):
            return ref
        if isinstance(ref, FakeMember):
            return ref.user
        return next((u for u in self.users.values() if u.username == ref), None) or self.member(ref).user

    def user_by_id(self, user_id: int) -> FakeUser:
        if user_id not in self.users:
            raise ApiError(404, 10013, "Unknown User")
        return self.users[user_id]

    def role(self, name: str) -> FakeRole:
        return self.guild.role_named(name)

    def bot_permissions(self, channel: FakeChannel | None) -> int:
        return self.guild.permissions_in(self.guild.members[self.bot_user.id], channel)

    def bot_member_or_user(self, channel: FakeChannel) -> FakeMember | FakeUser:
        return self.guild.members[self.bot_user.id] if channel.guild_id is not None else self.bot_user

    def dm_channel(self, user: UserRef) -> FakeChannel:
        resolved = self.user(user)
        if resolved.id not in self.dm_channels:
            channel_id = self.snowflakes.next()
            self.dm_channels[resolved.id] = FakeChannel(
                channel_id, "", type=ChannelType.DM, recipients=[resolved]
            )
        return self.dm_channels[resolved.id]

    def application_payload(self) -> JsonDict:
        return {
            "id": str(self.application_id),
            "name": self.bot_user.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": self.owner.payload(),
            "team": None,
            "flags": 0,
            "bot": self.bot_user.payload(),
            "install_params": {
                "scopes": ["bot", "applications.commands"],
                "permissions": str(BOT_PERMISSIONS),
            },
        }

    def ready_payload(self, session_id: str) -> JsonDict:
        return {
            "v": 10,
            "user": {**self.bot_user.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(self.guild.id), "unavailable": True}],
            "session_id": session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "_trace": ["fake-discord"],
        }

    def guild_create_payloads(self) -> list[JsonDict]:
        return [self.guild.create_payload()]

    async def add_channel(
        self, name: str, *, nsfw: bool = False, topic: str | None = None, overwrites: Sequence[Any] = ()
    ) -> FakeChannel:
        channel_id = self.snowflakes.next()
        channel = FakeChannel(
            channel_id,
            name,
            guild_id=self.guild.id,
            nsfw=nsfw,
            topic=topic,
            position=len(self.guild.channels),
            overwrites=[
                o if isinstance(o, PermissionOverwrite) else PermissionOverwrite(**o) for o in overwrites
            ],
        )
        self.guild.channels[channel_id] = channel
        await self.dispatch("CHANNEL_CREATE", channel.payload())
        return channel

    async def add_member(self, name: str, *, roles: Sequence[str] = (), bot: bool = False) -> FakeMember:
        user = FakeUser(self.snowflakes.next(), name, bot=bot, global_name=name.title())
        self.users[user.id] = user
        member = FakeMember(user, [self.role(role).id for role in roles])
        self.guild.members[user.id] = member
        await self.dispatch("GUILD_MEMBER_ADD", {**member.payload(), "guild_id": str(self.guild.id)})
        return member

    def add_role(
        self,
        name: str,
        permissions: int,
        *,
        guild: FakeGuild | None = None,
        position: int = 1,
        managed: bool = False,
    ) -> FakeRole:
        """Create a role (before start, or silently: use `set_role_permissions` for live changes)."""
        target = guild or self.guild
        role = FakeRole(self.snowflakes.next(), name, permissions, position=position, managed=managed)
        target.roles[role.id] = role
        return role

    async def set_role_permissions(self, role: str | FakeRole, permissions: int) -> None:
        target = role if isinstance(role, FakeRole) else self.role(role)
        target.permissions = permissions
        await self.dispatch("GUILD_ROLE_UPDATE", {"guild_id": str(self.guild.id), "role": target.payload()})

    async def member_updated(self, member: FakeMember) -> None:
        await self.dispatch("GUILD_MEMBER_UPDATE", {**member.payload(), "guild_id": str(self.guild.id)})

    async def remove_member(self, member: FakeMember) -> None:
        self.guild.members.pop(member.id, None)
        data = {"guild_id": str(self.guild.id), "user": member.user.payload()}
        await self.dispatch("GUILD_MEMBER_REMOVE", data)
