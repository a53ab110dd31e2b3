"""REST routes of the fake Discord for the guild and its members: the guild and its channel list, member
edits (timeouts, nicknames, roles), kicks and bans. As on Discord, the bot needs the matching permission,
and cannot time out, kick or ban the guild owner or an administrator.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.discord_api.entities import FakeMember
from tests.fakes.discord_api.protocol import Perm, now_iso
from tests.fakes.discord_api.recording import ApiError, RecordedRequest
from tests.fakes.discord_api.rest_channels import NO_CONTENT, ChannelRoutes


class GuildRoutes(ChannelRoutes):
    def _member(self, params: dict[str, str]) -> FakeMember:
        guild = self.server.guild_by_id(int(params["guild"]))
        member = guild.members.get(int(params["user"]))
        if member is None:
            raise ApiError(404, 10007, "Unknown Member")
        return member

    def _require_in_guild(self, permission: Perm, params: dict[str, str]) -> None:
        guild = self.server.guild_by_id(int(params["guild"]))
        if not self.server.bot_permissions(None, guild) & permission:
            raise ApiError(403, 50013, "Missing Permissions")

    def _require_above(self, member: FakeMember, permission: Perm, params: dict[str, str]) -> None:
        self._require_in_guild(permission, params)
        guild = self.server.guild_by_id(int(params["guild"]))
        if member.id == guild.owner_id or guild.base_permissions(member) & Perm.ADMINISTRATOR:
            raise ApiError(403, 50013, "Missing Permissions")

    async def get_guild(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        payload = self.server.guild_by_id(int(params["guild"])).create_payload()
        for key in ("members", "channels", "threads", "presences", "voice_states", "joined_at", "large"):
            payload.pop(key, None)
        return payload

    async def get_guild_channels(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        guild = self.server.guild_by_id(int(params["guild"]))
        return [channel.payload() for channel in guild.channels.values()]

    async def get_member(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        return self._member(params).payload()

    async def modify_member(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        member = self._member(params)
        body = record.json or {}
        if "communication_disabled_until" in body:
            self._require_above(member, Perm.MODERATE_MEMBERS, params)
            member.communication_disabled_until = body["communication_disabled_until"]
        if "nick" in body:
            member.nick = body["nick"]
        if "roles" in body:
            self._require_in_guild(Perm.MANAGE_ROLES, params)
            member.role_ids = [int(role_id) for role_id in body["roles"]]
        await self.server.member_updated(member, self.server.guild_by_id(int(params["guild"])))
        return member.payload()

    async def kick_member(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        member = self._member(params)
        self._require_above(member, Perm.KICK_MEMBERS, params)
        await self.server.remove_member(member, self.server.guild_by_id(int(params["guild"])))
        return NO_CONTENT

    async def ban_member(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        member = self._member(params)
        self._require_above(member, Perm.BAN_MEMBERS, params)
        await self.server.remove_member(member, self.server.guild_by_id(int(params["guild"])))
        self.server.bans[member.id] = {"user": member.user.payload(), "reason": None, "at": now_iso()}
        return NO_CONTENT
