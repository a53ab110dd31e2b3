"""Two real `lumi run` processes in distributed mode on one fresh PostgreSQL database and one host.

The first is a gateway and web server; the second a worker given the same WEB_PORT. Only the first
connects to Discord (the local server sees one gateway session) and listens on the port; the second
starts anyway (it opens no port), runs the clean-up loops and resumes jobs, which the first does not.
Both start at the same moment on an empty database, so they also race to migrate it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from storage.migrate import head_revision
from tests.e2e.lumi_process import LumiProcess, base_env
from tests.fakes.databases import temporary_postgres_database
from tests.fakes.discord_api.server import FakeDiscord

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

CLEANUP_LOOPS = (
    "evidence clean-up runs every",
    "3D file clean-up runs every",
    # The worker took each loop's advisory lock: it runs the passes for the deployment.
    "evidence clean-up: this process runs it for the deployment",
    "3D file clean-up: this process runs it for the deployment",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    async with temporary_postgres_database() as url:
        yield url


def process_env(
    tmp_path: Path, discord_server: FakeDiscord, database_url: str, *, roles: str, port: int
) -> dict[str, str]:
    # One DATA_DIR for both: it stands for the shared storage LUMI_SHARED_DATA_DIR vouches for.
    env = base_env(
        tmp_path / "data", discord_server.base_url, discord_server.token or "", discord_server.guild.id
    )
    env.update(
        {
            "LUMI_MODE": "distributed",
            "LUMI_ROLES": roles,
            "DATABASE_URL": database_url,
            "REDIS_URL": "redis://127.0.0.1:6379/15",
            "LUMI_SHARED_DATA_DIR": "true",
            "WEB_PORT": str(port),
        }
    )
    return env


async def alembic_revision(url: str) -> str | None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            row = (await connection.execute(sa.text("SELECT version_num FROM alembic_version"))).one()
            return str(row[0])
    finally:
        await engine.dispose()


async def test_gateway_and_worker_share_one_database_and_one_host(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    async with FakeDiscord() as discord_server:
        gateway = LumiProcess(
            process_env(tmp_path, discord_server, database_url, roles="gateway,web", port=port),
            tmp_path / "gateway.log",
        )
        worker = LumiProcess(
            process_env(tmp_path, discord_server, database_url, roles="worker", port=port),
            tmp_path / "worker.log",
        )
        try:
            await asyncio.gather(gateway.start(), worker.start())
            await asyncio.gather(
                gateway.wait_for_log("connected as"),
                worker.wait_for_log("not connecting to the Discord gateway (roles: worker)"),
            )
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/healthz") as response,
            ):
                assert response.status == 200
            for loop in CLEANUP_LOOPS:
                await worker.wait_for_log(loop)
            gateway_log, worker_log = gateway.log(), worker.log()
            assert f"web server listening on http://127.0.0.1:{port}" in gateway_log
            assert "web server listening" not in worker_log
            assert "cannot listen" not in worker_log
            # Discord saw one gateway session: the worker only used the REST API.
            assert len(discord_server.gateway.sessions) == 1
            assert not any(loop in gateway_log for loop in CLEANUP_LOOPS)
            # Both migrated nothing twice: the schema is at the head and neither failed on the race.
            assert await alembic_revision(database_url) == head_revision()
            assert "Traceback" not in gateway_log + worker_log
            # A process that never opened a gateway session still stops cleanly on SIGTERM.
            assert await worker.terminate(30) == 0
            assert "Lumi stopped" in worker.log()
        finally:
            await asyncio.gather(gateway.stop(), worker.stop())
