"""A local Discord-compatible server for end-to-end tests of discord.py clients.

`FakeDiscord` owns the world (one application, its bot user, its guilds), serves the gateway
(`discord_gateway`), the REST API and the CDN (`discord_rest`) on 127.0.0.1, records every request, and offers
test actions that behave like users: posting messages with attachments, running slash and context-menu
commands, clicking buttons, submitting modals.

    async with FakeDiscord() as server, redirect_discord_py(server):
        ...  # start a discord.py client with the token `server.token`

Sharding follows Discord (`sharding.py`): `shard_count` and `max_concurrency` are what `GET /gateway/bot`
recommends, clients choose their own `[shard_id, num_shards]` in IDENTIFY, and `identify_window_s` (0: no
limit) is the per-bucket IDENTIFY window that Discord keeps at 5 s. Two clients may identify on one shard:
both then get its events (duplicated delivery, as during a hand-over).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import discord
import yarl
from aiohttp import web

from tests.fakes.discord_api.actions import UserActions
from tests.fakes.discord_api.entities import ChannelRef, UserRef
from tests.fakes.discord_api.gateway import RECONNECT, GatewayHub
from tests.fakes.discord_api.payloads import message_text
from tests.fakes.discord_api.protocol import JsonDict, MessageFlag
from tests.fakes.discord_api.recording import ObservedList, RecordedRequest
from tests.fakes.discord_api.rest import RestApi
from tests.fakes.discord_api.world import InteractionRecord

__all__ = ["FakeDiscord", "InteractionRecord", "message_text", "redirect_discord_py", "running_client"]


class FakeDiscord(UserActions):
    def __init__(
        self,
        *,
        token: str | None = "test-token",
        heartbeat_interval_ms: int = 5_000,
        interaction_deadline_s: float = 3.0,
        shard_count: int = 1,
        max_concurrency: int = 1,
        identify_window_s: float = 0.0,
    ) -> None:
        super().__init__()
        self.token = token
        self.interaction_deadline_s = interaction_deadline_s
        self.shard_count = shard_count
        self.max_concurrency = max_concurrency
        self.rest = RestApi(self)
        # Tests inject failures on the server they hold; the REST side owns the rules.
        self.fail_next = self.rest.fail_next
        self.gateway = GatewayHub(
            self,
            heartbeat_interval_ms=heartbeat_interval_ms,
            max_concurrency=max_concurrency,
            identify_window_s=identify_window_s,
        )
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def dispatch(self, event: str, data: Any) -> None:
        """Send any gateway event to every identified client session."""
        await self.gateway.dispatch(event, data)

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_route("*", "/api/v10/{tail:.*}", self.rest.handle_api)
        for prefix in ("/attachments/", "/media/attachments/", "/cdn/"):
            app.router.add_get(prefix + "{tail:.*}", self.rest.handle_cdn)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # -- waiting ---------------------------------------------------------------------------------------

    @property
    def requests(self) -> ObservedList[RecordedRequest]:
        return self.rest.requests

    @property
    def unhandled_requests(self) -> list[RecordedRequest]:
        return [request for request in self.rest.requests if not request.handled]

    async def wait_for_request(
        self,
        method: str,
        path_regex: str,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        predicate: Callable[[RecordedRequest], bool] | None = None,
        since: int = 0,
    ) -> RecordedRequest:
        """The first request at index >= `since` whose method matches and whose path fully matches."""
        pattern = re.compile(path_regex)

        def matches(request: RecordedRequest) -> bool:
            if request.method != method.upper() or not pattern.fullmatch(request.path):
                return False
            return predicate is None or predicate(request)

        describe = f"{method.upper()} {path_regex}"
        return await self.rest.requests.wait_for(matches, since=since, timeout=timeout, describe=describe)

    async def wait_for_callback(
        self,
        interaction: JsonDict,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> RecordedRequest:
        path = rf"/interactions/{interaction['id']}/[^/]+/callback"
        return await self.wait_for_request("POST", path, timeout=timeout)

    async def wait_for_reply(
        self,
        interaction: JsonDict,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> JsonDict:
        """The first visible message answering the interaction (direct reply, follow-up or edited defer)."""
        record = self.interactions[int(interaction["id"])]
        await self.rest.requests.wait_for(
            lambda _: bool(record.replies), timeout=timeout, describe=f"a reply to interaction {record.id}"
        )
        return record.replies[0]

    async def wait_for_message(
        self,
        channel: ChannelRef | None = None,
        *,
        author: UserRef | None = None,
        predicate: Callable[[JsonDict], bool] | None = None,
        since: int = 0,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> JsonDict:
        """The first message created at index >= `since` (by the bot unless `author` says otherwise)."""
        channel_id = str(self.channel(channel).id) if channel is not None else None
        author_id = str(self.user(author).id if author is not None else self.bot_user.id)

        def matches(message: JsonDict) -> bool:
            if channel_id is not None and message["channel_id"] != channel_id:
                return False
            if message["author"]["id"] != author_id or int(message["flags"]) & MessageFlag.LOADING:
                return False
            return predicate is None or predicate(message)

        describe = f"a message from {author_id} in {channel_id or 'any channel'}"
        return await self.created_messages.wait_for(matches, since=since, timeout=timeout, describe=describe)

    async def wait_until_identified(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await _wait_event(self.gateway.identified, timeout, "a gateway IDENTIFY")

    async def reconnect_clients(self) -> None:
        """Ask every client to reconnect (op 7); discord.py answers with RESUME on a new socket."""
        await self.gateway.send_op(RECONNECT)


async def _wait_event(event: asyncio.Event, timeout: float, describe: str) -> None:  # noqa: ASYNC109
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {describe}") from None


@contextlib.contextmanager
def redirect_discord_py(server: FakeDiscord) -> Iterator[None]:
    """Point discord.py's REST base, default gateway and CDN base at `server`; restore them on exit.

    A plain `Client`/`Bot` connects to `DiscordWebSocket.DEFAULT_GATEWAY` and appends
    `?v=10&encoding=json&compress=zlib-stream` itself (zstd-stream when `zstandard` is installed).
    """
    websocket = discord.gateway.DiscordWebSocket
    saved = (discord.http.Route.BASE, websocket.DEFAULT_GATEWAY, discord.asset.Asset.BASE)
    discord.http.Route.BASE = server.api_base
    websocket.DEFAULT_GATEWAY = yarl.URL(server.gateway_url)
    discord.asset.Asset.BASE = f"{server.base_url}/cdn"
    try:
        yield
    finally:
        discord.http.Route.BASE, websocket.DEFAULT_GATEWAY, discord.asset.Asset.BASE = saved


@contextlib.asynccontextmanager
async def running_client(
    client: discord.Client, server: FakeDiscord, *, ready_timeout: float = 10.0
) -> AsyncIterator[None]:
    """Run `client.start()` in the background until the test is done; fail fast if start-up fails."""
    assert server.token is not None
    runner = asyncio.create_task(client.start(server.token), name="discord-client")
    try:
        # Polled because `wait_until_ready()` refuses to run before `start()` has logged in.
        deadline = time.monotonic() + ready_timeout
        while not client.is_ready():
            if runner.done():
                runner.result()  # re-raises the start-up error
                raise AssertionError("the client stopped before it became ready")
            if time.monotonic() > deadline:
                raise AssertionError(f"the client was not ready after {ready_timeout}s")
            await asyncio.sleep(0.01)
        yield
    finally:
        if not client.is_closed():
            await client.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(runner, timeout=5.0)
