"""Gateway side of the fake Discord: a v10 websocket with zlib-stream (or zstd-stream) transport compression.

One `GatewaySession` per IDENTIFY; a RESUME takes a session over on a new socket and replays what the client
missed. Events are filtered by the intents the client identified with, including the MESSAGE_CONTENT rule
(content, embeds, attachments and components arrive empty without it), and routed by shard
(`tests.fakes.discord_api.sharding`: a session gets only its shard's guilds, DMs go to shard 0).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from tests.fakes.discord_api.protocol import Intent, JsonDict
from tests.fakes.discord_api.sharding import (
    INVALID_SHARD,
    IdentifyLimiter,
    event_guild_id,
    owns,
    parse_shard,
)

if TYPE_CHECKING:
    from tests.fakes.discord_api.server import FakeDiscord

log = logging.getLogger(__name__)

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE_UPDATE = 0, 1, 2, 3
RESUME, RECONNECT, REQUEST_GUILD_MEMBERS = 6, 7, 8
INVALID_SESSION, HELLO, HEARTBEAT_ACK = 9, 10, 11
AUTHENTICATION_FAILED = 4004
ZLIB_SUFFIX = b"\x00\x00\xff\xff"

# Which intent an event needs; events not listed are always sent.
GUILD_EVENT_INTENTS = {
    "MESSAGE_CREATE": Intent.GUILD_MESSAGES,
    "MESSAGE_UPDATE": Intent.GUILD_MESSAGES,
    "MESSAGE_DELETE": Intent.GUILD_MESSAGES,
    "MESSAGE_DELETE_BULK": Intent.GUILD_MESSAGES,
    "MESSAGE_REACTION_ADD": Intent.GUILD_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_REMOVE": Intent.GUILD_MESSAGE_REACTIONS,
    "GUILD_MEMBER_ADD": Intent.GUILD_MEMBERS,
    "GUILD_MEMBER_UPDATE": Intent.GUILD_MEMBERS,
    "GUILD_MEMBER_REMOVE": Intent.GUILD_MEMBERS,
}
DM_EVENT_INTENTS = {
    "MESSAGE_CREATE": Intent.DIRECT_MESSAGES,
    "MESSAGE_UPDATE": Intent.DIRECT_MESSAGES,
    "MESSAGE_DELETE": Intent.DIRECT_MESSAGES,
    "MESSAGE_REACTION_ADD": Intent.DIRECT_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_REMOVE": Intent.DIRECT_MESSAGE_REACTIONS,
}
CONTENT_FIELDS = ("content", "embeds", "attachments", "components", "poll")


def make_encoder(compress: str | None) -> Callable[[str], bytes | str]:
    """One compression context per connection, as the client keeps one decompressor per connection."""
    if compress == "zlib-stream":
        compressor = zlib.compressobj()

        def encode_zlib(text: str) -> bytes:
            return compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)

        return encode_zlib
    if compress == "zstd-stream":
        # discord.py asks for zstd when the `zstandard` package is importable, so the fake can use it too.
        import zstandard

        stream = zstandard.ZstdCompressor().compressobj()

        def encode_zstd(text: str) -> bytes:
            return bytes(stream.compress(text.encode()) + stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))

        return encode_zstd
    return lambda text: text


@dataclass
class GatewaySession:
    session_id: str
    intents: int
    identify: JsonDict
    shard: tuple[int, int] | None = None
    identified_at: float = 0.0  # time.monotonic() of the accepted IDENTIFY
    socket: web.WebSocketResponse | None = None
    encode: Callable[[str], bytes | str] = field(default=lambda text: text)
    sequence: int = 0
    history: list[JsonDict] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, payload: JsonDict) -> None:
        # Compression state and socket order must agree, so encoding and sending happen under one lock.
        async with self.lock:
            socket = self.socket
            if socket is None or socket.closed:
                return
            encoded = self.encode(json.dumps(payload))
            try:
                if isinstance(encoded, bytes):
                    await socket.send_bytes(encoded)
                else:
                    await socket.send_str(encoded)
            except ConnectionError:
                log.debug("gateway client went away during send")

    def wants(self, event: str, data: Any) -> bool:
        if not owns(self.shard, event_guild_id(event, data)):
            return False
        is_dm = isinstance(data, dict) and "channel_id" in data and "guild_id" not in data
        needed = (DM_EVENT_INTENTS if is_dm else GUILD_EVENT_INTENTS).get(event)
        return needed is None or bool(self.intents & needed)


class GatewayHub:
    def __init__(
        self,
        server: FakeDiscord,
        *,
        heartbeat_interval_ms: int = 5_000,
        max_concurrency: int = 1,
        identify_window_s: float = 0.0,
    ) -> None:
        self.server = server
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.identifies = IdentifyLimiter(max_concurrency=max_concurrency, window_s=identify_window_s)
        self.sessions: dict[str, GatewaySession] = {}
        self.identified = asyncio.Event()
        self.received: list[JsonDict] = []
        self._sockets: set[web.WebSocketResponse] = set()

    @property
    def live_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if s.socket is not None and not s.socket.closed]

    def sessions_on_shard(self, shard_id: int) -> list[GatewaySession]:
        """Identified sessions holding `shard_id` (unsharded sessions count as shard 0)."""
        return [s for s in self.sessions.values() if (s.shard[0] if s.shard else 0) == shard_id]

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self._sockets.add(socket)
        encode = make_encoder(request.query.get("compress"))
        hello = GatewaySession(session_id="", intents=0, identify={}, socket=socket, encode=encode)
        session: GatewaySession | None = None
        try:
            hello_data = {"heartbeat_interval": self.heartbeat_interval_ms}
            await hello.send({"op": HELLO, "d": hello_data, "s": None})
            async for message in socket:
                if message.type != WSMsgType.TEXT:
                    continue
                payload = json.loads(message.data)
                self.received.append(payload)
                session = await self._handle_op(payload, socket, encode, session, hello)
        finally:
            self._sockets.discard(socket)
            if session is not None and session.socket is socket:
                session.socket = None
        return socket

    async def _handle_op(
        self,
        payload: JsonDict,
        socket: web.WebSocketResponse,
        encode: Callable[[str], bytes | str],
        session: GatewaySession | None,
        hello: GatewaySession,
    ) -> GatewaySession | None:
        """Handle one client payload; returns the session the socket now belongs to."""
        op = payload.get("op")
        data: JsonDict = payload.get("d") or {}
        if op == HEARTBEAT:
            await (session or hello).send({"op": HEARTBEAT_ACK, "d": None, "s": None})
        elif op == IDENTIFY:
            return await self._identify(data, socket, encode, hello)
        elif op == RESUME:
            return await self._resume(data, socket, encode, hello) or session
        elif op == REQUEST_GUILD_MEMBERS and session is not None:
            await self._send_member_chunk(session, data)
        return session

    async def _identify(
        self,
        data: JsonDict,
        socket: web.WebSocketResponse,
        encode: Callable[[str], bytes | str],
        hello: GatewaySession,
    ) -> GatewaySession | None:
        if self.server.token is not None and data.get("token") != self.server.token:
            await socket.close(code=AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return None
        try:
            shard = parse_shard(data.get("shard"))
        except ValueError as error:
            await socket.close(code=INVALID_SHARD, message=f"Invalid shard: {error}".encode())
            return None
        if not self.identifies.admit(shard):
            # Discord's answer to an IDENTIFY over the bucket's limit: identify again later.
            await hello.send({"op": INVALID_SESSION, "d": False, "s": None})
            return None
        session = GatewaySession(
            session_id=secrets.token_hex(16),
            intents=int(data.get("intents", 0)),
            identify=data,
            shard=shard,
            identified_at=self.identifies.records[-1].at,
            socket=socket,
            encode=encode,
            lock=hello.lock,
        )
        self.sessions[session.session_id] = session
        guilds = [guild for guild in self.server.guilds.values() if owns(shard, guild.id)]
        ready = self.server.ready_payload(session.session_id, guilds)
        if shard is not None:
            ready["shard"] = list(shard)
        await self._send_event(session, "READY", ready)
        for guild_payload in [guild.create_payload() for guild in guilds]:
            if not session.intents & Intent.GUILD_MEMBERS:
                # Without the privileged intent Discord only includes the bot's own member.
                bot_id = str(self.server.bot_user.id)
                members = [m for m in guild_payload["members"] if m["user"]["id"] == bot_id]
                guild_payload = {**guild_payload, "members": members}
            await self._send_event(session, "GUILD_CREATE", guild_payload)
        self.identified.set()
        return session

    async def _resume(
        self,
        data: JsonDict,
        socket: web.WebSocketResponse,
        encode: Callable[[str], bytes | str],
        hello: GatewaySession,
    ) -> GatewaySession | None:
        previous = self.sessions.get(data.get("session_id", ""))
        if previous is None:
            await hello.send({"op": INVALID_SESSION, "d": False, "s": None})
            return None
        previous.socket, previous.encode, previous.lock = socket, encode, hello.lock
        last_seen = int(data.get("seq") or 0)
        for missed in previous.history:
            if missed["s"] > last_seen:
                await previous.send(missed)
        await self._send_event(previous, "RESUMED", {})
        return previous

    async def _send_member_chunk(self, session: GatewaySession, data: JsonDict) -> None:
        guild = self.server.guilds.get(int(data.get("guild_id") or 0), self.server.guild)
        members = list(guild.members.values())
        if data.get("user_ids"):
            wanted = {int(user_id) for user_id in data["user_ids"]}
            members = [member for member in members if member.id in wanted]
        elif data.get("query"):
            members = [member for member in members if member.user.username.startswith(data["query"])]
        chunk = {
            "guild_id": str(guild.id),
            "members": [member.payload() for member in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "nonce": data.get("nonce"),
        }
        await self._send_event(session, "GUILD_MEMBERS_CHUNK", chunk)

    async def _send_event(self, session: GatewaySession, event: str, data: Any) -> None:
        session.sequence += 1
        payload = {"op": DISPATCH, "t": event, "s": session.sequence, "d": data}
        session.history.append(payload)
        await session.send(payload)

    def _visible_to(self, session: GatewaySession, event: str, data: Any) -> Any:
        """Apply the MESSAGE_CONTENT rule: without the intent, content is blank except in DMs, in the bot's
        own messages and in messages that mention the bot."""
        if event not in ("MESSAGE_CREATE", "MESSAGE_UPDATE") or session.intents & Intent.MESSAGE_CONTENT:
            return data
        if "guild_id" not in data:
            return data
        bot_id = str(self.server.bot_user.id)
        mentioned = any(user.get("id") == bot_id for user in data.get("mentions", []))
        if data.get("author", {}).get("id") == bot_id or mentioned:
            return data
        stripped = dict(data)
        for key in CONTENT_FIELDS:
            if key in stripped:
                stripped[key] = "" if key == "content" else []
        stripped.pop("poll", None)
        return stripped

    async def dispatch(self, event: str, data: Any) -> None:
        for session in list(self.sessions.values()):
            if session.wants(event, data):
                await self._send_event(session, event, self._visible_to(session, event, data))

    async def send_op(self, op: int, data: Any = None) -> None:
        for session in self.live_sessions:
            await session.send({"op": op, "d": data, "s": None})

    async def close(self) -> None:
        for socket in list(self._sockets):
            await socket.close(code=1001, message=b"server shutting down")
