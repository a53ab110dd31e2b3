"""Clean-up loops of two services on one database: on PostgreSQL one process runs every pass (never both,
never at once) and the other takes over when it stops; on SQLite each runs as before."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.services.generate3d.retention import GeneratedFileCleanup
from bot.services.moderation.evidence_retention import EvidenceRetentionJob
from bot.services.periodic import PeriodicTask
from storage.blob_stores import LocalBlobStore
from storage.db import Database, default_sqlite_url
from storage.locks import ClusterLock
from tests.fakes.databases import empty_all_tables, open_database
from tests.services.generate3d.test_retention import finished_job, job_files, make_service
from tests.services.moderation.parts import moderation

INTERVAL_S = 0.05


class Overlap:
    """Counts the passes running at one moment across every task sharing it."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0


class SlowPass(PeriodicTask):
    """A pass that takes a while, so two passes at once would overlap and be seen."""

    def __init__(self, lock: ClusterLock, overlap: Overlap) -> None:
        super().__init__(
            interval_s=INTERVAL_S, name="lumi-test-slow", description="slow pass", cluster_lock=lock
        )
        self.overlap = overlap
        self.calls = 0

    async def run_once(self) -> None:
        self.calls += 1
        self.overlap.now += 1
        self.overlap.most = max(self.overlap.most, self.overlap.now)
        try:
            await asyncio.sleep(INTERVAL_S * 2)
        finally:
            self.overlap.now -= 1


@pytest.fixture
async def two_connections(postgres_session_url: str) -> AsyncIterator[tuple[Database, Database]]:
    """Two handles on the session's PostgreSQL database: two engines, as two processes would have."""
    async with (
        open_database(postgres_session_url, migrated=False) as a,
        open_database(postgres_session_url, migrated=False) as b,
    ):
        await empty_all_tables(a)
        yield a, b


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the counters belong to tasks that signal nothing
            await asyncio.sleep(INTERVAL_S / 2)
    assert condition(), what


async def stopped(*tasks: PeriodicTask) -> None:
    await asyncio.gather(*(task.stop() for task in tasks))


@pytest.mark.postgres
async def test_one_process_runs_each_pass_and_another_takes_over_when_it_stops(
    two_connections: tuple[Database, Database], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = two_connections
    overlap = Overlap()
    first = SlowPass(ClusterLock(a.engine, "slow pass"), overlap)
    second = SlowPass(ClusterLock(b.engine, "slow pass"), overlap)
    caplog.set_level(logging.INFO, logger="bot.services.periodic")
    first.start()
    try:
        await eventually(lambda: first.calls >= 1, "the first process ran a pass")
        second.start()
        await eventually(lambda: first.calls >= 5 and second.skipped >= 3, "both ticked a few times")
        assert second.calls == 0
        assert overlap.most == 1
        await first.stop()
        before = first.calls
        await eventually(lambda: second.calls >= 2, "the second process took over")
        assert first.calls == before
        assert overlap.most == 1
    finally:
        await stopped(first, second)
    handovers = [r.getMessage() for r in caplog.records if "runs it for the deployment" in r.getMessage()]
    assert handovers == ["slow pass: this process runs it for the deployment"] * 2


@pytest.mark.postgres
async def test_two_moderation_services_purge_evidence_from_one_process(
    two_connections: tuple[Database, Database], tmp_path: Path
) -> None:
    a, b = two_connections
    async with moderation(a, tmp_path / "a") as service_a, moderation(b, tmp_path / "b") as service_b:
        jobs = [EvidenceRetentionJob(service, interval_s=INTERVAL_S) for service in (service_a, service_b)]
        for job in jobs:
            job.start()
        try:
            await eventually(lambda: max(job.runs for job in jobs) >= 4, "a few purges ran")
            assert sorted(job.runs for job in jobs)[0] == 0
        finally:
            await stopped(*jobs)


@pytest.mark.postgres
async def test_two_generation_services_delete_expired_files_once(
    two_connections: tuple[Database, Database], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = two_connections
    blobs = LocalBlobStore(tmp_path / "blobs")  # the shared DATA_DIR of both processes
    job_id = await finished_job(a, blobs, "an old teapot", age_days=40)
    services = [make_service(database, blobs, keep_days=30) for database in (a, b)]
    cleanups = [GeneratedFileCleanup(service.file_retention, interval_s=INTERVAL_S) for service in services]
    try:
        with caplog.at_level(logging.INFO, logger="bot.services.generate3d.retention"):
            for cleanup in cleanups:
                cleanup.start()
            await eventually(lambda: max(c.runs for c in cleanups) >= 4, "a few clean-ups ran")
        assert sorted(c.runs for c in cleanups)[0] == 0
        assert await job_files(a, job_id) == []
        deletions = [r for r in caplog.records if r.getMessage().startswith("deleted the files of")]
        assert len(deletions) == 1
    finally:
        await stopped(*cleanups)
        await asyncio.gather(*(service.close() for service in services))


async def test_on_sqlite_each_service_runs_its_own_loop(tmp_path: Path) -> None:
    async with open_database(default_sqlite_url(tmp_path / "db")) as database:
        overlap = Overlap()
        tasks = [SlowPass(ClusterLock(database.engine, "slow pass"), overlap) for _ in range(2)]
        for task in tasks:
            task.start()
        try:
            await eventually(lambda: all(task.calls >= 2 for task in tasks), "both loops ran")
            assert all(task.skipped == 0 for task in tasks)
        finally:
            await stopped(*tasks)
