"""REST routes of the fake Discord about the bot's own identity and setup: its user and other users, DM
channels, the application object, gateway discovery and application command registration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakes.discord_api.recording import ApiError, RecordedRequest

if TYPE_CHECKING:
    from tests.fakes.discord_api.server import FakeDiscord


class ApplicationRoutes:
    server: FakeDiscord

    async def get_me(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        token = record.headers.get("Authorization", "")
        if self.server.token is not None and token != f"Bot {self.server.token}":
            raise ApiError(401, 0, "401: Unauthorized")
        return {**self.server.bot_user.payload(), "verified": True, "mfa_enabled": False, "flags": 0}

    async def get_user(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        return self.server.user_by_id(int(params["user"])).payload()

    async def create_dm(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        user = self.server.user_by_id(int(record.json["recipient_id"]))
        return self.server.dm_channel(user).payload()

    async def get_application(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        return self.server.application_payload()

    async def get_gateway(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        return {"url": self.server.gateway_url}

    async def get_gateway_bot(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        used = len(self.server.gateway.identifies.accepted)
        limit = {
            "total": 1000,
            "remaining": max(0, 1000 - used),
            "reset_after": 86_400_000,
            "max_concurrency": self.server.max_concurrency,
        }
        shards = self.server.shard_count
        return {"url": self.server.gateway_url, "shards": shards, "session_start_limit": limit}

    # -- application commands ------------------------------------------------------------------------

    def _command_scope(self, params: dict[str, str]) -> int | None:
        if int(params["app"]) != self.server.application_id:
            raise ApiError(403, 50035, "Invalid Form Body (application_id)")
        return int(params["guild"]) if "guild" in params else None

    async def get_commands(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        return self.server.commands.get(self._command_scope(params), [])

    async def put_commands(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        scope = self._command_scope(params)
        stored = []
        for command in record.json or []:
            entry = {
                "type": 1,
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
                **command,
                "id": str(self.server.snowflakes.next()),
                "application_id": str(self.server.application_id),
                "version": str(self.server.snowflakes.next()),
            }
            if scope is not None:
                entry["guild_id"] = str(scope)
            stored.append(entry)
        self.server.commands[scope] = stored
        return stored
