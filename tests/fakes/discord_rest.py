"""REST side of the fake Discord: the `/api/v10` routes and the CDN.

Handlers only translate HTTP into calls on `FakeDiscord`, which owns the state; every request (known route
or not) is recorded first, so tests can assert on exactly what the bot sent.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.discord_payloads import (
    ChannelType,
    FakeChannel,
    FakeMember,
    JsonDict,
    MessageFlag,
    Perm,
    now_iso,
)
from tests.fakes.discord_recording import (
    ApiError,
    FailureRule,
    ObservedList,
    RecordedRequest,
    failure_response,
    json_response,
    parse_body,
)

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord
    from tests.fakes.discord_world import InteractionRecord

# Interaction callback types (Discord API "Interaction Callback Type").
PONG = 1
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
MESSAGE_CALLBACK_TYPES = frozenset({CHANNEL_MESSAGE, UPDATE_MESSAGE})


def _add_reply(interaction: InteractionRecord, message: JsonDict) -> None:
    if all(reply["id"] != message["id"] for reply in interaction.replies):
        interaction.replies.append(message)


Handler = Callable[[RecordedRequest, dict[str, str]], Awaitable[Any]]
NO_CONTENT = object()


class RestApi:
    def __init__(self, server: FakeDiscord) -> None:
        self.server = server
        self.requests: ObservedList[RecordedRequest] = ObservedList()
        self.cdn_requests: ObservedList[RecordedRequest] = ObservedList()
        self.failures: list[FailureRule] = []
        snowflake, token = r"(?P<{}>\d+)", r"(?P<token>[^/]+)"
        channel, message = snowflake.format("channel"), snowflake.format("message")
        guild, user, app = snowflake.format("guild"), snowflake.format("user"), snowflake.format("app")
        own_reaction = rf"/channels/{channel}/messages/{message}/reactions/(?P<emoji>[^/]+)/@me"
        webhook_message = rf"/webhooks/{app}/{token}/messages/(?P<message>@original|\d+)"
        table: list[tuple[str, str, Handler]] = [
            ("GET", r"/users/@me", self.get_me),
            ("GET", rf"/users/{user}", self.get_user),
            ("POST", r"/users/@me/channels", self.create_dm),
            ("GET", r"/(?:oauth2/)?applications/@me", self.get_application),
            ("GET", r"/gateway", self.get_gateway),
            ("GET", r"/gateway/bot", self.get_gateway_bot),
            ("GET", rf"/applications/{app}/commands", self.get_commands),
            ("PUT", rf"/applications/{app}/commands", self.put_commands),
            ("GET", rf"/applications/{app}/guilds/{guild}/commands", self.get_commands),
            ("PUT", rf"/applications/{app}/guilds/{guild}/commands", self.put_commands),
            ("GET", rf"/channels/{channel}", self.get_channel),
            ("GET", rf"/channels/{channel}/messages", self.list_messages),
            ("POST", rf"/channels/{channel}/messages", self.create_message),
            ("POST", rf"/channels/{channel}/messages/bulk-delete", self.bulk_delete),
            ("GET", rf"/channels/{channel}/messages/{message}", self.get_message),
            ("PATCH", rf"/channels/{channel}/messages/{message}", self.edit_message),
            ("DELETE", rf"/channels/{channel}/messages/{message}", self.delete_message),
            ("POST", rf"/channels/{channel}/typing", self.no_content),
            ("PUT", own_reaction, self.react),
            ("DELETE", own_reaction, self.unreact),
            ("POST", rf"/interactions/(?P<interaction>\d+)/{token}/callback", self.interaction_callback),
            ("POST", rf"/webhooks/{app}/{token}", self.create_followup),
            ("PATCH", rf"/webhooks/{app}/{token}", self.edit_webhook),
            ("DELETE", rf"/webhooks/{app}/{token}", self.no_content),
            ("GET", webhook_message, self.get_webhook_message),
            ("PATCH", webhook_message, self.edit_webhook_message),
            ("DELETE", webhook_message, self.delete_webhook_message),
            ("GET", rf"/guilds/{guild}", self.get_guild),
            ("GET", rf"/guilds/{guild}/channels", self.get_guild_channels),
            ("GET", rf"/guilds/{guild}/members/{user}", self.get_member),
            ("PATCH", rf"/guilds/{guild}/members/{user}", self.modify_member),
            ("DELETE", rf"/guilds/{guild}/members/{user}", self.kick_member),
            ("PUT", rf"/guilds/{guild}/bans/{user}", self.ban_member),
            ("DELETE", rf"/guilds/{guild}/bans/{user}", self.no_content),
        ]
        self.routes = [(method, re.compile(pattern), handler) for method, pattern, handler in table]

    # -- plumbing -------------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float = 0.05,
        body: JsonDict | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (429 comes with `Via` and `retry_after`).

        Paths are relative to /api/v10 (`/channels/\\d+/messages`) or CDN paths (`/attachments/.*`).
        """
        self.failures.append(
            FailureRule(method.upper(), re.compile(path_regex), status, times, retry_after, body)
        )

    def _injected_failure(self, record: RecordedRequest) -> web.Response | None:
        for rule in self.failures:
            if rule.times > 0 and rule.method == record.method and rule.pattern.fullmatch(record.path):
                rule.times -= 1
                return failure_response(rule)
        return None

    async def _record(self, request: web.Request, path: str) -> RecordedRequest:
        payload, files, form = await parse_body(request)
        return RecordedRequest(
            index=len(self.requests),
            method=request.method,
            path=path,
            query=dict(request.query),
            json=payload,
            files=files,
            form=form,
            headers=dict(request.headers),
        )

    async def handle_api(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        record = await self._record(request, path)
        self.requests.append(record)
        response = self._injected_failure(record)
        if response is None:
            response = await self._route(record)
        record.status = response.status
        if isinstance(response, web.Response) and response.body is not None:
            record.response = json.loads(response.body)  # type: ignore[arg-type]
        # Waiters also watch state the handler changed (replies, messages), not only the request list.
        self.requests.notify()
        return response

    async def _route(self, record: RecordedRequest) -> web.Response:
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(record.path)
            if match is not None and method == record.method:
                try:
                    result = await handler(record, match.groupdict())
                except ApiError as error:
                    return json_response(error.status, {"code": error.code, "message": error.message})
                if result is NO_CONTENT:
                    return web.Response(status=204)
                return json_response(200, result)
        record.handled = False
        return json_response(404, {"code": 0, "message": f"404: Not Found ({record.method} {record.path})"})

    async def handle_cdn(self, request: web.Request) -> web.StreamResponse:
        """The CDN role: attachments, and any avatar or icon (answered with a placeholder image)."""
        record = await self._record(request, request.path)
        record.index = len(self.cdn_requests)
        self.cdn_requests.append(record)
        response = self._injected_failure(record)
        if response is None:
            hosted = self.server.hosted_files.get(request.path.removeprefix("/media"))
            if hosted is not None:
                response = web.Response(body=hosted.data, content_type=hosted.content_type)
            elif request.path.startswith("/cdn/"):
                response = web.Response(body=self.server.placeholder_png, content_type="image/png")
            else:
                response = web.Response(status=404, text="Not Found")
        record.status = response.status
        return response

    # -- users, application, gateway ---------------------------------------------------------------------

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
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return {"url": self.server.gateway_url, "shards": 1, "session_start_limit": limit}

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

    # -- channels and messages ---------------------------------------------------------------------------

    def _channel(self, params: dict[str, str]) -> FakeChannel:
        return self.server.channel_by_id(int(params["channel"]))

    def _message(self, params: dict[str, str]) -> JsonDict:
        message = self.server.message_by_id(int(params["message"]))
        if message["channel_id"] != params["channel"]:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    def _require(self, permission: Perm, channel: FakeChannel | None) -> None:
        if channel is not None and channel.type == ChannelType.DM:
            return
        if not self.server.bot_permissions(channel) & permission:
            raise ApiError(403, 50013, "Missing Permissions")

    async def get_channel(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        return self._channel(params).payload()

    async def list_messages(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        channel = self._channel(params)
        self._require(Perm.READ_MESSAGE_HISTORY, channel)
        limit = int(record.query.get("limit", "50"))
        newest_first = sorted(self.server.messages.get(channel.id, []), key=lambda m: -int(m["id"]))
        if "before" in record.query:
            newest_first = [m for m in newest_first if int(m["id"]) < int(record.query["before"])]
        if "after" in record.query:
            newest_first = [m for m in newest_first if int(m["id"]) > int(record.query["after"])]
        return newest_first[:limit]

    def message_fields(
        self,
        record: RecordedRequest,
        channel: FakeChannel,
        existing: list[JsonDict] | None = None,
        *,
        body: JsonDict | None = None,
    ) -> JsonDict:
        """Content, embeds, components, flags and attachments of a create or edit body (JSON or multipart).

        `body` defaults to the request's JSON; interaction callbacks pass their `data` object.
        """
        body = (record.json or {}) if body is None else body
        fields = {key: body[key] for key in ("content", "embeds", "components", "flags") if key in body}
        if "attachments" in body or record.files:
            kept = {a["id"]: a for a in existing or []}
            attachments = []
            for item in body.get("attachments", []):
                if str(item.get("id")) in kept:
                    attachments.append(kept[str(item["id"])])
            # discord.py names uploads files[N] and refers to them as attachment id N.
            described = {str(item.get("id")): item for item in body.get("attachments", [])}
            for index, upload in enumerate(record.files):
                description = described.get(str(index), {}).get("description")
                attachments.append(
                    self.server.host_file(
                        channel.id, upload.filename, upload.data, upload.content_type, description=description
                    )
                )
            fields["attachments"] = attachments
        return fields

    async def create_message(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        channel = self._channel(params)
        self._require(Perm.SEND_MESSAGES, channel)
        if record.files:
            self._require(Perm.ATTACH_FILES, channel)
        body = record.json or {}
        fields = self.message_fields(record, channel)
        if not any(fields.get(key) for key in ("content", "embeds", "attachments", "components")):
            raise ApiError(400, 50006, "Cannot send an empty message")
        extra: JsonDict = {}
        reference = body.get("message_reference")
        if reference:
            reference = {key: str(value) for key, value in reference.items() if value is not None}
            extra["message_reference"] = {"channel_id": str(channel.id), **reference, "type": 0}
            referenced = self.server.messages_by_id.get(int(reference.get("message_id", 0)))
            extra["referenced_message"] = referenced
            message_type = 19
        else:
            message_type = 0
        return await self.server.create_message(
            channel, self.server.bot_member_or_user(channel), message_type=message_type, extra=extra, **fields
        )

    async def get_message(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        self._channel(params)
        return self._message(params)

    async def edit_message(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        channel = self._channel(params)
        message = self._message(params)
        changes = self.message_fields(record, channel, message["attachments"])
        if message["author"]["id"] != str(self.server.bot_user.id) and set(changes) - {"flags"}:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        return await self.server.edit_message(message, changes)

    async def delete_message(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        channel = self._channel(params)
        message = self._message(params)
        if message["author"]["id"] != str(self.server.bot_user.id):
            self._require(Perm.MANAGE_MESSAGES, channel)
        await self.server.delete_message(message)
        return NO_CONTENT

    async def bulk_delete(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        channel = self._channel(params)
        self._require(Perm.MANAGE_MESSAGES, channel)
        for message_id in (record.json or {}).get("messages", []):
            message = self.server.messages_by_id.get(int(message_id))
            if message is not None:
                await self.server.delete_message(message)
        return NO_CONTENT

    async def react(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        channel = self._channel(params)
        self._require(Perm.ADD_REACTIONS, channel)
        await self.server.add_reaction(self._message(params), params["emoji"], self.server.bot_user)
        return NO_CONTENT

    async def unreact(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        self._channel(params)
        await self.server.remove_reaction(self._message(params), params["emoji"], self.server.bot_user)
        return NO_CONTENT

    async def no_content(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        return NO_CONTENT

    # -- interactions and webhook follow-ups -----------------------------------------------------------

    async def interaction_callback(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        interaction = self.server.interactions.get(int(params["interaction"]))
        if interaction is None or interaction.token != params["token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        if time.monotonic() - interaction.created > self.server.interaction_deadline_s:
            # Discord forgets an interaction that was not acknowledged within three seconds.
            raise ApiError(404, 10062, "Unknown interaction")
        if interaction.response_type is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        body = record.json or {}
        callback_type = int(body.get("type", 0))
        data = body.get("data") or {}
        interaction.response_type = callback_type
        message: JsonDict | None = None
        flags = int(data.get("flags") or 0)
        if callback_type == CHANNEL_MESSAGE:
            fields = self.message_fields(record, interaction.channel, body=data)
            message = await self.server.create_interaction_message(interaction, fields)
        elif callback_type == DEFERRED_CHANNEL_MESSAGE:
            loading = {"content": "", "flags": (flags & MessageFlag.EPHEMERAL) | MessageFlag.LOADING}
            message = await self.server.create_interaction_message(interaction, loading)
        elif callback_type in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE) and interaction.source_message:
            interaction.original_message_id = int(interaction.source_message["id"])
            message = self.server.messages_by_id.get(interaction.original_message_id)
            if callback_type == UPDATE_MESSAGE and message is not None:
                existing = message["attachments"]
                changes = self.message_fields(record, interaction.channel, existing, body=data)
                message = await self.server.edit_message(message, changes)
                _add_reply(interaction, message)
        interaction.callbacks.append(record)
        if record.query.get("with_response") not in ("1", "true", "True"):
            return NO_CONTENT
        response: JsonDict = {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.type,
                "response_message_loading": callback_type == DEFERRED_CHANNEL_MESSAGE,
                "response_message_ephemeral": bool(
                    message is not None and int(message.get("flags", 0)) & MessageFlag.EPHEMERAL
                ),
            }
        }
        if message is not None:
            response["interaction"]["response_message_id"] = message["id"]
            response["resource"] = {"type": callback_type, "message": message}
        else:
            response["resource"] = {"type": callback_type}
        return response

    def _interaction_for_token(self, params: dict[str, str]) -> InteractionRecord:
        if int(params["app"]) != self.server.application_id:
            raise ApiError(404, 10015, "Unknown Webhook")
        interaction = self.server.interactions_by_token.get(params["token"])
        if interaction is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        return interaction

    def _webhook_message(self, interaction: InteractionRecord, params: dict[str, str]) -> JsonDict:
        if params["message"] == "@original":
            if interaction.response_type is None:
                raise ApiError(404, 10015, "Unknown Webhook")
            message_id = interaction.original_message_id
        else:
            message_id = int(params["message"])
        message = self.server.messages_by_id.get(message_id or 0)
        if message is None:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    async def create_followup(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        interaction = self._interaction_for_token(params)
        if interaction.response_type is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        fields = self.message_fields(record, interaction.channel)
        original = self.server.messages_by_id.get(interaction.original_message_id or 0)
        if original is not None and int(original["flags"]) & MessageFlag.LOADING:
            # After a "thinking" defer, Discord turns the first follow-up into the original response; its
            # ephemerality was decided by the defer.
            fields["flags"] = int(original["flags"]) & ~MessageFlag.LOADING
            message = await self.server.edit_message(original, fields)
            _add_reply(interaction, message)
        else:
            message = await self.server.create_interaction_message(interaction, fields, followup=True)
        interaction.followups.append(record)
        return message

    async def edit_webhook(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        bot = self.server.bot_user
        return {"id": params["app"], "type": 3, "name": bot.username, "application_id": params["app"]}

    async def get_webhook_message(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        return self._webhook_message(self._interaction_for_token(params), params)

    async def edit_webhook_message(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        interaction = self._interaction_for_token(params)
        message = self._webhook_message(interaction, params)
        fields = self.message_fields(record, interaction.channel, message["attachments"])
        if int(message["flags"]) & MessageFlag.LOADING:
            fields["flags"] = int(message["flags"]) & ~MessageFlag.LOADING
        interaction.followups.append(record)
        edited = await self.server.edit_message(message, fields)
        _add_reply(interaction, edited)
        return edited

    async def delete_webhook_message(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        interaction = self._interaction_for_token(params)
        await self.server.delete_message(self._webhook_message(interaction, params))
        return NO_CONTENT

    # -- guild and members ---------------------------------------------------------------------------

    def _member(self, params: dict[str, str]) -> FakeMember:
        guild = self.server.guild
        if int(params["guild"]) != guild.id:
            raise ApiError(404, 10004, "Unknown Guild")
        member = guild.members.get(int(params["user"]))
        if member is None:
            raise ApiError(404, 10007, "Unknown Member")
        return member

    def _require_above(self, member: FakeMember, permission: Perm) -> None:
        self._require(permission, None)
        guild = self.server.guild
        if member.id == guild.owner_id or guild.base_permissions(member) & Perm.ADMINISTRATOR:
            raise ApiError(403, 50013, "Missing Permissions")

    async def get_guild(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        if int(params["guild"]) != self.server.guild.id:
            raise ApiError(404, 10004, "Unknown Guild")
        payload = self.server.guild.create_payload()
        for key in ("members", "channels", "threads", "presences", "voice_states", "joined_at", "large"):
            payload.pop(key, None)
        return payload

    async def get_guild_channels(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        return [channel.payload() for channel in self.server.guild.channels.values()]

    async def get_member(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        return self._member(params).payload()

    async def modify_member(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        member = self._member(params)
        body = record.json or {}
        if "communication_disabled_until" in body:
            self._require_above(member, Perm.MODERATE_MEMBERS)
            member.communication_disabled_until = body["communication_disabled_until"]
        if "nick" in body:
            member.nick = body["nick"]
        if "roles" in body:
            self._require(Perm.MANAGE_ROLES, None)
            member.role_ids = [int(role_id) for role_id in body["roles"]]
        await self.server.member_updated(member)
        return member.payload()

    async def kick_member(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        member = self._member(params)
        self._require_above(member, Perm.KICK_MEMBERS)
        await self.server.remove_member(member)
        return NO_CONTENT

    async def ban_member(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        member = self._member(params)
        self._require_above(member, Perm.BAN_MEMBERS)
        await self.server.remove_member(member)
        self.server.bans[member.id] = {"user": member.user.payload(), "reason": None, "at": now_iso()}
        return NO_CONTENT
