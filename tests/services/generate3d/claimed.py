"""Two services standing for two Lumi processes on one PostgreSQL (distributed mode, claimed 3D jobs),
each with its own engine, job queue and LISTEN connection, around one local Meshy double; and the steps
the claimed-job tests share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.services.generate3d.job_rows import get_job
from bot.services.generate3d.service import GenerationService
from storage.db import Database
from storage.models import GenerationJob, JobState
from tests.services.generate3d.parts import Env, request, two_processes_on, wait_until

CLAIMS = {"claimed_jobs": True, "heartbeat_timeout_s": 2.0}


@pytest.fixture
async def two_processes(postgres_session_url: str, tmp_path: Path) -> AsyncIterator[tuple[Env, Env]]:
    async with two_processes_on(postgres_session_url, tmp_path) as envs:
        yield envs


async def queue_rows(database: Database) -> list[tuple[str, str]]:
    async with database.engine.connect() as connection:
        rows = await connection.execute(sa.text("SELECT dedupe_key, status::text FROM pgqueuer ORDER BY id"))
        return [(str(key), str(status)) for key, status in rows]


async def reaches(service: GenerationService, job_id: str, state: JobState, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    async def there() -> bool:
        job = await get_job(service.database, job_id)
        return job is not None and job.state is state

    await wait_until(there, timeout)


async def worker_and_gateway(
    envs: tuple[Env, Env], **config: object
) -> tuple[GenerationService, GenerationService]:
    worker_env, gateway_env = envs
    worker = worker_env.service(**CLAIMS, **config)
    gateway = gateway_env.service(**CLAIMS, **config)
    await worker.start()
    await gateway.start()
    await worker.resume_unfinished()
    return worker, gateway


async def job_in_its_preview(
    envs: tuple[Env, Env],
) -> tuple[GenerationService, GenerationService, GenerationJob]:
    """A textured job submitted by the gateway and run by the worker, held in a 30 s Meshy preview."""
    meshy = envs[0].meshy
    meshy.config.preview_s = 30.0
    worker, gateway = await worker_and_gateway(envs)
    job = await gateway.submit(request(texture=True))
    await asyncio.wait_for(meshy.stream_opened.wait(), 20)
    return worker, gateway, job
