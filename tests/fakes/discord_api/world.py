"""The fake Discord's world: one application and its bot user, guilds with channels, roles and members,
and the stores that the REST and gateway sides share. `FakeDiscord` builds on it.

Every guild has text channels `general`, `photos`, `mod-log` and an NSFW `nsfw`; roles `@everyone`,
`Moderator` (manage messages, timeout members) and the bot's managed `Lumi` role; members `owner`, `alice`,
`mod` (a Moderator) and the bot. The default guild (`guild`) is on shard 0 of any shard plan of up to ten
shards; `add_guild` makes more, each on the shard a test asks for. Channels named by a string are the
default guild's; tests pass a `FakeChannel` (`guild.channel_named(...)`) for another guild's.
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
        alice = FakeUser(self.snowflakes.next(), "alice", global_name="Alice")
        mod = FakeUser(self.snowflakes.next(), "mod", global_name="Mod")
        self.users.update({alice.id: alice, mod.id: mod})
        self.guilds: dict[int, FakeGuild] = {}
        # 2520 is divisible by every shard count from 1 to 10, so the default guild is on shard 0 of each.
        self.guild = self._build_guild("Lumi Test Guild", self.snowflakes.next_on_shard(0, 2520))
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

    def _build_guild(self, name: str, guild_id: int) -> FakeGuild:
        guild = FakeGuild(id=guild_id, name=name, owner_id=self.owner.id)
        guild.roles[guild_id] = FakeRole(guild_id, "@everyone", int(EVERYONE_PERMISSIONS))
        moderator_role = self.add_role("Moderator", int(MODERATOR_PERMISSIONS), guild=guild, position=1)
        bot_role = self.add_role("Lumi", int(BOT_PERMISSIONS), guild=guild, position=2, managed=True)
        if not self.guilds:
            self.moderator_role, self.bot_role = moderator_role, bot_role
        for channel_name, nsfw in (("general", False), ("photos", False), ("mod-log", False), ("nsfw", True)):
            channel_id = self.snowflakes.next()
            guild.channels[channel_id] = FakeChannel(
                channel_id, channel_name, guild_id=guild_id, nsfw=nsfw, position=len(guild.channels)
            )
        by_name = {user.username: user for user in self.users.values()}
        for user, roles in (
            (self.bot_user, [bot_role.id]),
            (self.owner, []),
            (by_name["alice"], []),
            (by_name["mod"], [moderator_role.id]),
        ):
            guild.members[user.id] = FakeMember(user, roles)
        self.guilds[guild_id] = guild
        return guild

    def add_guild(self, name: str, *, shard_id: int = 0, shard_count: int = 1) -> FakeGuild:
        """Another guild like the default one (before clients connect), on shard `shard_id` of a plan of
        `shard_count` shards (Discord's rule: `(guild_id >> 22) % shard_count`)."""
        return self._build_guild(name, self.snowflakes.next_on_shard(shard_id, shard_count))

    def guild_by_id(self, guild_id: int) -> FakeGuild:
        guild = self.guilds.get(guild_id)
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        return guild

    def guild_of(self, channel: FakeChannel | None) -> FakeGuild:
        """The guild a channel belongs to; the default guild for None (and for DMs)."""
        if channel is None or channel.guild_id is None:
            return self.guild
        return self.guilds[channel.guild_id]

    def channel(self, ref: ChannelRef) -> FakeChannel:
        if isinstance(ref, FakeChannel):
            return ref
        if isinstance(ref, int):
            return self.channel_by_id(ref)
        return self.guild.channel_named(ref)

    def channel_by_id(self, channel_id: int) -> FakeChannel:
        channel = next(
            (g.channels[channel_id] for g in self.guilds.values() if channel_id in g.channels), None
        )
        if channel is None:
            channel = next((dm for dm in self.dm_channels.values() if dm.id == channel_id), None)
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        return channel

    def member(self, ref: UserRef, guild: FakeGuild | None = None) -> FakeMember:
        target = guild or self.guild
        if isinstance(ref, FakeMember):
            return target.members[ref.id] if guild is not None else ref
        if isinstance(ref, FakeUser):
            return target.members[ref.id]
        return target.member_named(ref)

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

    def bot_permissions(self, channel: FakeChannel | None, guild: FakeGuild | None = None) -> int:
        target = guild or self.guild_of(channel)
        return target.permissions_in(target.members[self.bot_user.id], channel)

    def bot_member_or_user(self, channel: FakeChannel) -> FakeMember | FakeUser:
        if channel.guild_id is None:
            return self.bot_user
        return self.guild_of(channel).members[self.bot_user.id]

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

    def ready_payload(self, session_id: str, guilds: Sequence[FakeGuild]) -> JsonDict:
        return {
            "v": 10,
            "user": {**self.bot_user.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(guild.id), "unavailable": True} for guild in guilds],
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

    async def member_updated(self, member: FakeMember, guild: FakeGuild | None = None) -> None:
        target = guild or self.guild
        await self.dispatch("GUILD_MEMBER_UPDATE", {**member.payload(), "guild_id": str(target.id)})

    async def remove_member(self, member: FakeMember, guild: FakeGuild | None = None) -> None:
        target = guild or self.guild
        target.members.pop(member.id, None)
        data = {"guild_id": str(target.id), "user": member.user.payload()}
        await self.dispatch("GUILD_MEMBER_REMOVE", data)
