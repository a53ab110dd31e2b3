"""Advisory locks on a real PostgreSQL: migrations run once when processes start together, and a
recurring job's lock has one holder at a time, passing on when the holder lets go or its connection dies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from storage import migrate
from storage.db import Database
from storage.locks import ClusterLock, lock_key
from tests.fakes.databases import open_database, temporary_postgres_database


@pytest.fixture
async def empty_postgres_url() -> AsyncIterator[str]:
    async with temporary_postgres_database() as url:
        yield url


def test_lock_keys_are_stable_signed_64_bit_numbers() -> None:
    assert lock_key("migrations") == lock_key("migrations")
    assert lock_key("migrations") != lock_key("evidence clean-up")
    assert -(2**63) <= lock_key("migrations") < 2**63


@pytest.mark.postgres
async def test_two_processes_upgrading_an_empty_database_migrate_it_once(
    empty_postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Two engines are two PostgreSQL sessions, as two processes would be.
    first, second = Database(empty_postgres_url), Database(empty_postgres_url)
    try:
        with caplog.at_level(logging.INFO):
            await asyncio.gather(first.upgrade(), second.upgrade())
        assert await first.revision() == migrate.head_revision()
    finally:
        await asyncio.gather(first.close(), second.close())
    runs = [
        r.getMessage()
        for r in caplog.records
        if r.name == "alembic.runtime.migration" and "Running upgrade" in r.getMessage()
    ]
    # Each revision ran once ("Running upgrade 0001 -> 0002, ..."), by one of the two.
    targets = [run.split("->")[1].split(",")[0].strip() for run in runs]
    assert sorted(targets) == sorted(set(targets)) and targets[-1] == migrate.head_revision(), runs
    waits = [r for r in caplog.records if r.name == "storage.locks"]
    assert [r.getMessage() for r in waits] == ["another Lumi process is migrating the database; waiting"]


def revisions() -> list[str]:
    script = ScriptDirectory.from_config(migrate.make_config())
    return [revision.revision for revision in script.walk_revisions()]


@pytest.mark.postgres
async def test_one_holder_at_a_time_until_it_releases(empty_postgres_url: str) -> None:
    async with (
        open_database(empty_postgres_url, migrated=False) as a,
        open_database(empty_postgres_url, migrated=False) as b,
    ):
        mine, theirs = ClusterLock(a.engine, "evidence clean-up"), ClusterLock(b.engine, "evidence clean-up")
        other_job = ClusterLock(b.engine, "3D file clean-up")
        assert await mine.hold()
        assert await mine.hold()  # still held on its kept connection
        assert not await theirs.hold()
        assert await other_job.hold()  # another name is another lock
        await mine.release()
        assert not mine.held
        assert await theirs.hold()
        assert not await mine.hold()
        await theirs.release()
        await other_job.release()


@pytest.mark.postgres
async def test_a_holder_whose_connection_died_loses_the_lock_to_another(empty_postgres_url: str) -> None:
    async with (
        open_database(empty_postgres_url, migrated=False) as a,
        open_database(empty_postgres_url, migrated=False) as b,
    ):
        dying, survivor = (
            ClusterLock(a.engine, "evidence clean-up"),
            ClusterLock(b.engine, "evidence clean-up"),
        )
        assert await dying.hold()
        async with b.engine.connect() as admin:
            # Only this database's holders, and wait (up to 5 s) until each backend has exited: the
            # plain call returns when the signal is sent, before the lock is released.
            ended = await admin.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND pid <> pg_backend_pid() "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            )
            assert ended.scalars().all() == [True]
            await admin.commit()
        assert await survivor.hold()
        # The old holder notices its connection is gone and does not believe it still holds the lock.
        assert not await dying.hold()
        await survivor.release()


async def test_on_sqlite_every_lock_is_granted(sqlite_database: Database) -> None:
    first, second = ClusterLock(sqlite_database.engine, "x"), ClusterLock(sqlite_database.engine, "x")
    assert await first.hold()
    assert await second.hold()
