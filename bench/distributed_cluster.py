"""One run of the distributed bench: a scratch PostgreSQL database, a Redis key prefix, the local Discord
and Meshy servers, and real `lumi run` processes splitting two shards between them.

The processes are started as the e2e tests start them (`tests/e2e/distributed_processes.py`:
`tests/launch_lumi.py run`, which points discord.py at the local server, with one environment for every
process), with `LUMI_MODE=distributed` and every role, so that one process or two
run the same code on the same work: each is a gateway for its shards, a 3D worker and a web server.
Not a test: figures depend on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tests.e2e.distributed_processes import distributed_env, publish_globally, running, setup_moderation
from tests.e2e.lumi_process import LumiProcess
from tests.fakes.databases import temporary_postgres_database
from tests.fakes.discord_api.entities import FakeGuild
from tests.fakes.discord_api.server import FakeDiscord
from tests.fakes.meshy_api.server import FakeMeshy, FakeMeshyConfig
from tests.fakes.redis_keys import delete_keys

SHARD_COUNT = 2
IDENTIFY_WINDOW_S = 0.5
# A child process answers 200 commands at once far more slowly than Discord's 3 s allow.
INTERACTION_DEADLINE_S = 600.0
START_S = 180.0  # several processes load their models at once on a busy machine


@dataclass(frozen=True)
class RunPlan:
    """What one run does: its processes' shard ids, and the work and timings shared by every run."""

    shards_per_process: tuple[str, ...]
    guilds_per_shard: int
    jobs: int
    max_concurrent_jobs: int
    heartbeat_timeout_s: float
    preview_s: float
    refine_s: float

    @property
    def name(self) -> str:
        count = len(self.shards_per_process)
        return f"{count} process" + ("es" if count > 1 else "")


@dataclass
class Cluster:
    plan: RunPlan
    discord: FakeDiscord
    meshy: FakeMeshy
    processes: list[LumiProcess]
    guilds: list[FakeGuild]
    database_url: str
    engine: AsyncEngine

    async def scalar_rows(self, sql: str, **params: object) -> list[tuple[object, ...]]:
        async with self.engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(sa.text(sql), params)]

    def logs(self) -> str:
        return "".join(process.log() for process in self.processes)


def process_env(
    plan: RunPlan,
    discord: FakeDiscord,
    meshy: FakeMeshy,
    *,
    data_dir: Path,
    shards: str,
    database_url: str,
    prefix: str,
) -> dict[str, str]:
    return distributed_env(
        data_dir,
        discord,
        database_url,
        prefix,
        roles="gateway,worker,web",
        DISCORD_SHARD_COUNT=str(SHARD_COUNT),
        DISCORD_SHARD_IDS=shards,
        DISCORD_IDENTIFY_WINDOW_S=str(IDENTIFY_WINDOW_S),
        MODERATION_FETCH_HOSTS=f"127.0.0.1:{discord.port}",
        MESHY_API_KEY=meshy.api_key,
        MESHY_BASE_URL=meshy.base_url,
        ENHANCER_BACKEND="keywords",
        GENERATION_MAX_CONCURRENT_JOBS=str(plan.max_concurrent_jobs),
        GENERATION_USER_CONCURRENT_LIMIT=str(plan.jobs + 10),
        GENERATION_DAILY_USER_LIMIT=str(plan.jobs + 10),
        GENERATION_DAILY_GUILD_LIMIT=str(plan.jobs + 10),
        JOB_HEARTBEAT_TIMEOUT_S=str(plan.heartbeat_timeout_s),
    )


def add_guilds(discord: FakeDiscord, per_shard: int) -> list[FakeGuild]:
    """`per_shard` guilds on each of the two shards; the server's default guild is the first of shard 0."""
    guilds = [discord.guild]
    for shard in range(SHARD_COUNT):
        existing = sum(1 for guild in guilds if (guild.id >> 22) % SHARD_COUNT == shard)
        for index in range(existing, per_shard):
            guilds.append(discord.add_guild(f"Shard {shard} guild {index}", shard_id=shard, shard_count=2))
    return guilds


async def models_loaded(processes: Sequence[LumiProcess]) -> None:
    # The prompt check's model loads at start; a /3d command before that would wait on it.
    await asyncio.gather(
        *(process.wait_for_log("English profanity model loaded", START_S) for process in processes)
    )


@contextlib.asynccontextmanager
async def running_cluster(plan: RunPlan, folder: Path) -> AsyncIterator[Cluster]:
    """Everything one run needs, started, ready for work; stopped and removed afterwards."""
    prefix = f"lumi-bench-{uuid.uuid4().hex}"
    meshy_config = FakeMeshyConfig(
        pending_s=0.05, preview_s=plan.preview_s, refine_s=plan.refine_s, keepalive_s=1.0, stream_tick_s=0.1
    )
    async with (
        temporary_postgres_database() as database_url,
        FakeDiscord(
            shard_count=SHARD_COUNT,
            identify_window_s=IDENTIFY_WINDOW_S,
            interaction_deadline_s=INTERACTION_DEADLINE_S,
        ) as discord,
        FakeMeshy(config=meshy_config, credits=10**9) as meshy,
    ):
        guilds = add_guilds(discord, plan.guilds_per_shard)
        processes = [
            LumiProcess(
                process_env(
                    plan,
                    discord,
                    meshy,
                    data_dir=folder / "data",
                    shards=shards,
                    database_url=database_url,
                    prefix=prefix,
                ),
                folder / f"lumi-{index}.log",
            )
            for index, shards in enumerate(plan.shards_per_process)
        ]
        engine = create_async_engine(database_url, poolclass=NullPool)
        try:
            async with running(*processes, timeout=START_S):
                await models_loaded(processes)
                sync = r"/applications/\d+/guilds/\d+/commands"
                await discord.wait_for_request("PUT", sync, timeout=START_S)
                publish_globally(discord)
                for guild in guilds:
                    await setup_moderation(discord, guild, timeout=START_S)
                yield Cluster(plan, discord, meshy, processes, guilds, database_url, engine)
        finally:
            await engine.dispose()
            await delete_keys(prefix)
