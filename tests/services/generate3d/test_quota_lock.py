"""Two processes submit for one user at its limit at the same moment, on one PostgreSQL: one job is stored,
the other submission is refused. The quota locks make the second count wait for the first insert."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.services.generate3d.service import GenerationService, QuotaExceeded
from storage.db import Database
from storage.models import GenerationJob
from tests.services.generate3d.parts import Env, request, two_processes_on

pytestmark = pytest.mark.postgres


@pytest.fixture
async def two_processes(postgres_session_url: str, tmp_path: Path) -> AsyncIterator[tuple[Env, Env]]:
    async with two_processes_on(postgres_session_url, tmp_path) as envs:
        envs[0].meshy.config.preview_s = 30.0  # the accepted job keeps running: it counts against the limit
        yield envs


async def stored_jobs(database: Database, user_id: int) -> int:
    async with database.engine.connect() as connection:
        statement = sa.text("SELECT count(*) FROM generation_job WHERE user_id = :user")
        return int((await connection.execute(statement, {"user": user_id})).scalar_one())


async def submit_both(services: list[GenerationService], user_id: int) -> list[GenerationJob | BaseException]:
    # Both pass admission: neither job exists yet. Then both submit at once.
    admissions = [await service.admit(request(user_id=user_id)) for service in services]
    return await asyncio.gather(
        *(service.submit(admission) for service, admission in zip(services, admissions, strict=True)),
        return_exceptions=True,
    )


async def test_two_submissions_at_the_concurrent_limit_store_one_job(two_processes: tuple[Env, Env]) -> None:
    services = [env.service(user_concurrent_limit=1) for env in two_processes]
    outcomes = await submit_both(services, user_id=41)
    jobs = [outcome for outcome in outcomes if isinstance(outcome, GenerationJob)]
    refusals = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(jobs) == 1, outcomes
    assert len(refusals) == 1 and isinstance(refusals[0], QuotaExceeded), refusals
    assert "You already have 1 3D job(s) running (limit 1)" in refusals[0].message
    assert await stored_jobs(two_processes[0].database, 41) == 1


async def test_two_submissions_at_the_daily_limit_store_one_job(two_processes: tuple[Env, Env]) -> None:
    services = [env.service(daily_user_limit=1) for env in two_processes]
    outcomes = await submit_both(services, user_id=42)
    refusals = [outcome for outcome in outcomes if isinstance(outcome, QuotaExceeded)]
    assert len(refusals) == 1, outcomes
    assert "used your 1 3D generations for today" in refusals[0].message
    assert await stored_jobs(two_processes[0].database, 42) == 1


async def test_a_user_below_the_limit_gets_both_jobs(two_processes: tuple[Env, Env]) -> None:
    services = [env.service(user_concurrent_limit=2) for env in two_processes]
    outcomes = await submit_both(services, user_id=43)
    assert all(isinstance(outcome, GenerationJob) for outcome in outcomes), outcomes
    assert await stored_jobs(two_processes[0].database, 43) == 2
