from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import StatementError

from storage.db import Database, DatabaseUnavailable, default_sqlite_url
from storage.models import ModerationCase
from storage.repo import cases as repo_cases
from storage.repo import guilds as repo_guilds
from tests.fakes.databases import run_sql


def test_default_sqlite_url_is_absolute_and_creates_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = default_sqlite_url(Path("nested/data"))
    assert (tmp_path / "nested" / "data").is_dir()
    assert url == f"sqlite+aiosqlite:///{(tmp_path / 'nested' / 'data' / 'lumi.db').resolve().as_posix()}"
    assert url.startswith("sqlite+aiosqlite:////")


async def test_backend_and_ping(database: Database) -> None:
    assert database.backend in ("sqlite", "postgresql")
    assert database.backend == database.engine.dialect.name
    await database.ping()


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        Database("mysql+aiomysql://u@h/db")


def test_repr_hides_the_password() -> None:
    db = Database("postgresql+asyncpg://lumi:hunter22@db.example:5432/lumi")
    assert "hunter22" not in repr(db)
    assert "hunter22" not in db.url


async def test_unreachable_postgres_names_host_and_port() -> None:
    # Port 1 on loopback is closed, so the connection is refused at once.
    db = Database("postgresql+asyncpg://postgres@127.0.0.1:1/lumi", connect_timeout_s=3)
    try:
        with pytest.raises(DatabaseUnavailable, match=r"127\.0\.0\.1:1 .*server is running"):
            await db.ping()
        with pytest.raises(DatabaseUnavailable):
            await db.upgrade()
    finally:
        await db.close()


async def test_sqlite_in_a_missing_directory_is_unavailable(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/lumi.db")
    try:
        with pytest.raises(DatabaseUnavailable, match=r"missing/dir/lumi\.db .*writable"):
            await db.ping()
    finally:
        await db.close()


async def test_sqlite_connections_use_wal_and_foreign_keys(sqlite_database: Database) -> None:
    async with sqlite_database.session() as session:
        journal = (await run_sql(session, "PRAGMA journal_mode")).scalar_one()
        foreign_keys = (await run_sql(session, "PRAGMA foreign_keys")).scalar_one()
    assert journal == "wal"
    assert foreign_keys == 1


async def test_uncommitted_work_is_rolled_back_when_the_session_ends(database: Database) -> None:
    async with database.session() as session:
        await repo_guilds.get_guild_settings(session=session, guild_id=1)
    async with database.session() as session:
        count = (await run_sql(session, "SELECT count(*) FROM guild_settings")).scalar_one()
    assert count == 0


async def test_objects_stay_readable_after_commit(database: Database) -> None:
    async with database.session() as session:
        settings = await repo_guilds.get_guild_settings(session=session, guild_id=7)
        await session.commit()
    # expire_on_commit=False: no lazy reload (which would need IO) after the session is gone.
    assert settings.comment_language == "ko"


async def test_datetimes_come_back_aware_utc_and_naive_ones_are_refused(database: Database) -> None:
    kst = timezone(timedelta(hours=9))
    expires = datetime(2030, 1, 2, 12, 0, tzinfo=kst)
    async with database.session() as session:
        case = await repo_cases.create_case(
            session=session,
            guild_id=1,
            channel_id=2,
            author_id=3,
            evidence_key="e/1.jpg",
            evidence_expires_at=expires,
        )
        await session.commit()
        case_id = case.id
    async with database.session() as session:
        loaded = await repo_cases.get_case_by_id(session=session, case_id=case_id or 0)
        assert loaded is not None
        await session.refresh(loaded)
        assert loaded.evidence_expires_at == expires
        assert loaded.evidence_expires_at is not None and loaded.evidence_expires_at.tzinfo == UTC
        assert loaded.evidence_expires_at.hour == 3
        assert loaded.created_at.tzinfo == UTC

        with pytest.raises(StatementError, match="naive datetime"):
            await repo_cases.update_case(session=session, case=loaded, decided_at=datetime(2030, 1, 1))


async def test_enums_are_stored_as_their_string_values(database: Database) -> None:
    async with database.session() as session:
        await repo_cases.create_case(session=session, guild_id=1, channel_id=2, author_id=3)
        stored = (await run_sql(session, "SELECT status, action FROM moderation_case")).one()
    assert tuple(stored) == ("open", "none")
    assert ModerationCase.__table__.c.status.type.length == 32  # type: ignore[attr-defined]
