"""The fake Discord's sharding against discord.py's AutoShardedBot: guild routing, DMs on shard 0, the
gateway's recommendation, the IDENTIFY window per bucket and duplicated delivery."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from discord.ext import commands

from tests.fakes.discord_api.entities import FakeGuild
from tests.fakes.discord_api.server import FakeDiscord, redirect_discord_py, running_client
from tests.fakes.discord_api.sharding import shard_for
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


class ShardProbe(commands.AutoShardedBot):
    """Records the messages it receives; identifies again 0.2 s after an Invalid Session (not 5 s)."""

    def __init__(self, **options: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.05, **options)
        self.seen: list[discord.Message] = []

    async def on_message(self, message: discord.Message) -> None:
        self.seen.append(message)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if not initial:
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def sharded_fake(**options: Any) -> AsyncIterator[tuple[FakeDiscord, FakeGuild]]:
    """A fake Discord whose default guild is on shard 0 of 2 and a second guild on shard 1."""
    async with FakeDiscord(shard_count=2, **options) as server:
        second = server.add_guild("Second Guild", shard_id=1, shard_count=2)
        with redirect_discord_py(server):
            yield server, second


@contextlib.asynccontextmanager
async def probes(server: FakeDiscord, *plans: dict[str, Any]) -> AsyncIterator[list[ShardProbe]]:
    clients = [ShardProbe(**plan) for plan in plans]
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(running_client(client, server))
        yield clients


async def test_each_shard_gets_only_its_guilds_and_dms_go_to_shard_zero() -> None:
    async with (
        sharded_fake() as (server, second),
        probes(server, {"shard_ids": [0], "shard_count": 2}, {"shard_ids": [1], "shard_count": 2}) as clients,
    ):
        first, other = clients
        assert shard_for(server.guild.id, 2) == 0 and shard_for(second.id, 2) == 1
        assert [g.id for g in first.guilds] == [server.guild.id]
        assert [g.id for g in other.guilds] == [second.id]
        assert [s.shard for s in server.gateway.sessions.values()] == [(0, 2), (1, 2)]

        await server.post_message("general", "alice", "in the first guild")
        await server.post_message(second.channel_named("general"), "alice", "in the second guild")
        await server.post_message(server.dm_channel("alice"), "alice", "a direct message")
        await eventually(lambda: len(first.seen) == 2 and len(other.seen) == 1, "three messages")
        assert [m.content for m in first.seen] == ["in the first guild", "a direct message"]
        assert [m.content for m in other.seen] == ["in the second guild"]
        assert other.seen[0].guild is not None and other.seen[0].guild.id == second.id


async def test_an_unsharded_session_still_gets_everything() -> None:
    async with sharded_fake() as (server, second), probes(server, {"shard_ids": None}) as clients:
        # Without a plan AutoShardedBot asks GET /gateway/bot, which recommends two shards here.
        (client,) = clients
        assert client.shard_count == 2
        assert {g.id for g in client.guilds} == {server.guild.id, second.id}
        limits = await client.fetch_session_start_limits()
        assert limits.max_concurrency == 1 and limits.remaining == 1000 - 2


async def test_identifies_faster_than_the_bucket_window_are_refused_until_it_passed() -> None:
    window = 0.6
    async with (
        sharded_fake(identify_window_s=window) as (server, _),
        probes(server, {"shard_ids": [0, 1], "shard_count": 2}) as clients,
    ):
        # discord.py's hook would wait 5 s before the second shard; this probe waits 0.2 s, too soon.
        assert clients[0].is_ready()
        identifies = server.gateway.identifies
        assert [r.shard_id for r in identifies.accepted] == [0, 1]
        assert identifies.rejected and all(r.shard_id == 1 for r in identifies.rejected)
        first, second = identifies.accepted
        assert second.at - first.at >= window


async def test_shards_in_different_buckets_identify_together() -> None:
    async with (
        sharded_fake(identify_window_s=5.0, max_concurrency=2) as (server, _),
        probes(server, {"shard_ids": [0], "shard_count": 2}, {"shard_ids": [1], "shard_count": 2}),
    ):
        identifies = server.gateway.identifies
        assert not identifies.rejected
        first, second = identifies.accepted
        assert second.at - first.at < 5.0


async def test_two_sessions_on_one_shard_both_get_its_events() -> None:
    async with (
        sharded_fake() as (server, second),
        probes(server, {"shard_ids": [1], "shard_count": 2}, {"shard_ids": [1], "shard_count": 2}) as clients,
    ):
        assert len(server.gateway.sessions_on_shard(1)) == 2
        await server.post_message(second.channel_named("photos"), "mod", "seen twice")
        await server.post_message("general", "mod", "not on shard 1")
        await eventually(lambda: all(len(c.seen) == 1 for c in clients), "one message on each session")
        await asyncio.sleep(0.1)
        assert [[m.content for m in c.seen] for c in clients] == [["seen twice"], ["seen twice"]]


async def test_a_message_can_be_delivered_twice_to_one_session() -> None:
    async with sharded_fake() as (server, _), probes(server, {"shard_ids": [0], "shard_count": 2}) as clients:
        message = await server.post_message("general", "alice", "again", deliveries=2)
        await eventually(lambda: len(clients[0].seen) == 2, "two deliveries")
        assert {m.id for m in clients[0].seen} == {int(message["id"])}


async def test_an_identify_outside_the_plan_is_closed_with_invalid_shard() -> None:
    async with sharded_fake() as (server, _):
        client = ShardProbe(shard_ids=[2], shard_count=2)
        with pytest.raises(discord.ConnectionClosed) as closed:
            await asyncio.wait_for(client.start(server.token or ""), 10)
        assert closed.value.code == 4010
        await client.close()
