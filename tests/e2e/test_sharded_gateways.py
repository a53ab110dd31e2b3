"""Two real `lumi run` gateways splitting one bot's shards, on one PostgreSQL database and one Redis.

The fake Discord recommends two shards and refuses IDENTIFYs of one bucket less than `WINDOW_S` apart; its
default guild is on shard 0, a second guild on shard 1. Process A runs shard 0, process B shard 1 (both
`DISCORD_SHARD_COUNT=2`, `LUMI_MODE=distributed`). Both share one token, so the fake cannot tell their
REST calls apart: their logs say which process did what. A third test runs two gateways on one shard,
as during a hand-over, and sees one case for a post both receive.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.e2e.distributed_processes import distributed_env, publish_globally, running, setup_moderation
from tests.e2e.lumi_process import LumiProcess
from tests.fakes import images as corpus
from tests.fakes.databases import temporary_postgres_database
from tests.fakes.discord_api.protocol import JsonDict
from tests.fakes.discord_api.server import FakeDiscord, message_text

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

WINDOW_S = 1.0
WAIT_S = 90.0  # each process loads the moderation models at its first image, on a busy 2-core machine


def photo(name: str) -> bytes:
    data = corpus.photo_bytes(name)
    if data is None:
        pytest.skip(f"the package that ships the {name} photo is not installed")
    return data


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    async with temporary_postgres_database() as url:
        yield url


def gateway(
    tmp_path: Path, server: FakeDiscord, database_url: str, prefix: str, *, name: str, shards: str, count: int
) -> LumiProcess:
    env = distributed_env(
        tmp_path / "data",
        server,
        database_url,
        prefix,
        roles="gateway",
        DISCORD_SHARD_COUNT=str(count),
        DISCORD_SHARD_IDS=shards,
        DISCORD_IDENTIFY_WINDOW_S=str(WINDOW_S),
        MODERATION_FETCH_HOSTS=f"127.0.0.1:{server.port}",
    )
    return LumiProcess(env, tmp_path / f"{name}.log")


async def cases_per_guild(database_url: str) -> dict[int, int]:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                sa.text("SELECT guild_id, count(*) FROM moderation_case GROUP BY guild_id")
            )
            return {int(guild_id): int(count) for guild_id, count in rows}
    finally:
        await engine.dispose()


def events_seen(server: FakeDiscord, shard_id: int, message: JsonDict) -> int:
    (session,) = server.gateway.sessions_on_shard(shard_id)
    return sum(1 for p in session.history if p["t"] == "MESSAGE_CREATE" and p["d"]["id"] == message["id"])


async def test_two_gateways_split_the_shards_and_share_limits(
    tmp_path: Path, database_url: str, redis_prefix: str
) -> None:
    async with FakeDiscord(shard_count=2, identify_window_s=WINDOW_S) as server:
        second = server.add_guild("Second Guild", shard_id=1, shard_count=2)
        first_guild = server.guild
        a = gateway(tmp_path, server, database_url, redis_prefix, name="a", shards="0", count=2)
        b = gateway(tmp_path, server, database_url, redis_prefix, name="b", shards="1", count=2)
        async with running(a, b):
            # Each session's READY lists only its shard's guild; IDENTIFYs a window apart, none refused.
            sessions = {s.shard: s for s in server.gateway.sessions.values()}
            assert set(sessions) == {(0, 2), (1, 2)}
            for shard, guild in (((0, 2), first_guild), ((1, 2), second)):
                ready = sessions[shard].history[0]
                assert ready["t"] == "READY" and [g["id"] for g in ready["d"]["guilds"]] == [str(guild.id)]
            identifies = server.gateway.identifies
            assert not identifies.rejected, identifies.records
            first, later = identifies.accepted
            assert later.at - first.at >= WINDOW_S
            await a.wait_for_log("shard 0 of 2 ready with 1 guilds")
            await b.wait_for_log("shard 1 of 2 ready with 1 guilds")
            # Only the process holding shard 0 syncs the dev guild's commands.
            sync = r"/applications/\d+/guilds/\d+/commands"
            await server.wait_for_request("PUT", sync, timeout=WAIT_S)
            assert "synced" in a.log() and "synced" not in b.log()
            assert len([r for r in server.requests if r.method == "PUT" and "commands" in r.path]) == 1
            publish_globally(server)

            # A flagged post in each guild: one case each, recorded by the process owning its shard.
            await setup_moderation(server, first_guild, timeout=WAIT_S)
            await setup_moderation(server, second, timeout=WAIT_S)
            for guild in (first_guild, second):
                since = len(server.created_messages)
                await server.post_message(
                    guild.channel_named("photos"), "alice", attachments=[("rocket.jpg", photo("rocket"))]
                )
                alert = await server.wait_for_message(
                    guild.channel_named("mod-log"),
                    since=since,
                    predicate=lambda m: bool(m["embeds"]),
                    timeout=WAIT_S,
                )
                assert "Case #1" in message_text(alert)
            await a.wait_for_log(f"case #1 in guild {first_guild.id}")
            await b.wait_for_log(f"case #1 in guild {second.id}")
            assert f"guild {second.id}" not in a.log() and f"guild {first_guild.id}" not in b.log()
            assert await cases_per_guild(database_url) == {first_guild.id: 1, second.id: 1}

            # /scan: five a minute per user across both processes; the sixth, on the other shard, refused.
            replies = []
            for guild in (first_guild, first_guild, first_guild, second, second, second):
                interaction = await server.slash_command(
                    "scan",
                    user="alice",
                    channel=guild.channel_named("general"),
                    options={"image": ("t.jpg", corpus.PLAIN_TEXT)},
                )
                replies.append(message_text(await server.wait_for_reply(interaction, timeout=WAIT_S)))
            assert all("This file is text, not an image." in reply for reply in replies[:5]), replies
            assert replies[5].startswith("Slow down: try again in"), replies

            # A direct message reaches shard 0 only.
            dm = await server.post_message(server.dm_channel("alice"), "alice", "hello Lumi")
            assert (events_seen(server, 0, dm), events_seen(server, 1, dm)) == (1, 0)
            assert "Traceback" not in a.log() + b.log()


async def test_two_gateways_on_one_shard_make_one_case_of_a_post(
    tmp_path: Path, database_url: str, redis_prefix: str
) -> None:
    async with FakeDiscord(identify_window_s=WINDOW_S) as server:
        a = gateway(tmp_path, server, database_url, redis_prefix, name="a", shards="0", count=1)
        b = gateway(tmp_path, server, database_url, redis_prefix, name="b", shards="0", count=1)
        async with running(a, b):
            assert len(server.gateway.sessions_on_shard(0)) == 2
            await setup_moderation(server, server.guild, timeout=WAIT_S)
            since = len(server.created_messages)
            post = await server.post_message("photos", "alice", attachments=[("rocket.jpg", photo("rocket"))])
            assert events_seen_by_all(server, post) == 2
            await server.wait_for_message(
                "mod-log", since=since, predicate=lambda m: bool(m["embeds"]), timeout=WAIT_S
            )
            duplicate = f"message {post['id']} in guild {server.guild.id} already has a case"
            await wait_for_either(duplicate, a, b)
            await asyncio.sleep(0.5)
            assert await cases_per_guild(database_url) == {server.guild.id: 1}
            alerts = [m for m in server.messages_in("mod-log") if m["embeds"]]
            assert len(alerts) == 1
            recorded = [p for p in (a, b) if f"case #1 in guild {server.guild.id}" in p.log()]
            assert len(recorded) == 1
            # The setup command reached both sessions too: one process answered it, the other stood back.
            assert "handled already (Discord delivered it twice)" in a.log() + b.log()
            assert "Traceback" not in a.log() + b.log()


async def wait_for_either(text: str, *processes: LumiProcess) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not any(text in process.log() for process in processes):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no log line with {text!r} after {WAIT_S}s")
        await asyncio.sleep(0.1)


def events_seen_by_all(server: FakeDiscord, message: JsonDict) -> int:
    sessions: list[Any] = server.gateway.sessions_on_shard(0)
    return sum(
        1 for s in sessions for p in s.history if p["t"] == "MESSAGE_CREATE" and p["d"]["id"] == message["id"]
    )
