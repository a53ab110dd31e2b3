"""REST side of the fake Discord: the `/api/v10` routes and the CDN.

Handlers only translate HTTP into calls on `FakeDiscord`, which owns the state; every request (known route
or not) is recorded first, so tests can assert on exactly what the bot sent. This module holds the route
table, the recording, failure injection and the CDN; the handlers live with their resource in
`discord_rest_application`, `discord_rest_channels`, `discord_rest_interactions` and `discord_rest_guild`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.discord_api.protocol import JsonDict
from tests.fakes.discord_api.recording import (
    ApiError,
    FailureRule,
    ObservedList,
    RecordedRequest,
    failure_response,
    json_response,
    parse_body,
)
from tests.fakes.discord_api.rest_application import ApplicationRoutes
from tests.fakes.discord_api.rest_channels import NO_CONTENT
from tests.fakes.discord_api.rest_guild import GuildRoutes
from tests.fakes.discord_api.rest_interactions import InteractionRoutes

if TYPE_CHECKING:
    from tests.fakes.discord_api.server import FakeDiscord

Handler = Callable[[RecordedRequest, dict[str, str]], Awaitable[Any]]


class RestApi(ApplicationRoutes, InteractionRoutes, GuildRoutes):
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
