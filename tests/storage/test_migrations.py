from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from storage import migrate
from storage.db import Database, default_sqlite_url
from storage.models import metadata

QUEUE_TABLES = ("pgqueuer", "pgqueuer_log", "pgqueuer_schedules", "pgqueuer_statistics")


async def test_fixture_database_is_at_head_and_matches_the_models(database: Database) -> None:
    assert migrate.head_revision() == "0003"
    assert await migrate.current(database.engine) == "0003"
    assert await migrate.schema_diff(database.engine) == []


async def test_schema_diff_notices_a_missing_index(fresh_database: Database) -> None:
    async with fresh_database.engine.begin() as connection:
        await connection.execute(sa.text("DROP INDEX ix_moderation_case_image_phash"))
    diff = await migrate.schema_diff(fresh_database.engine)
    assert [entry[0] for entry in diff] == ["add_index"]
    assert diff[0][1].name == "ix_moderation_case_image_phash"


async def test_downgrade_to_base_then_upgrade_again(fresh_database: Database) -> None:
    url = fresh_database.engine.url.render_as_string(hide_password=False)
    await fresh_database.close()

    await migrate.downgrade(url, "base")
    assert await migrate.current(url) is None
    assert await _table_names(url) == {"alembic_version"}

    await migrate.upgrade(url)
    assert await migrate.current(url) == "0003"
    # PostgreSQL also holds the job queue's tables (revision 0003); SQLite has none.
    queue = set(QUEUE_TABLES) if url.startswith("postgresql") else set()
    assert await _table_names(url) == {"alembic_version", *metadata.tables, *queue}


async def test_upgrade_from_an_empty_sqlite_file_and_twice_is_harmless(tmp_path: Path) -> None:
    url = default_sqlite_url(tmp_path / "fresh")
    assert await migrate.current(url) is None
    db = Database(url)
    try:
        await db.upgrade()
        await db.upgrade()
        assert await migrate.current(url) == "0003"
    finally:
        await db.close()


async def test_in_memory_sqlite_is_migrated_on_its_own_connection() -> None:
    db = Database("sqlite+aiosqlite://")
    try:
        await db.upgrade()
        assert await migrate.schema_diff(db.engine) == []
    finally:
        await db.close()


def test_config_points_at_the_packaged_scripts() -> None:
    config = migrate.make_config("postgresql+asyncpg://u:p%40ss@h/db")
    script_location = Path(str(config.get_main_option("script_location")))
    assert (script_location / "env.py").is_file()
    assert (script_location / "versions" / "0001_initial.py").is_file()
    assert config.get_main_option("sqlalchemy.url") == "postgresql+asyncpg://u:p%40ss@h/db"


async def _table_names(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def test_the_job_queue_is_installed_on_postgresql_only(fresh_database: Database) -> None:
    url = fresh_database.engine.url.render_as_string(hide_password=False)
    names = await _table_names(url)
    if fresh_database.backend == "postgresql":
        assert set(QUEUE_TABLES) <= names
    else:
        assert not any(name.startswith("pgqueuer") for name in names)
    async with fresh_database.engine.connect() as connection:
        columns = await connection.run_sync(lambda sync: sa.inspect(sync).get_columns("generation_job"))
    by_name = {column["name"]: column for column in columns}
    assert by_name["lease_epoch"]["nullable"] is False
    assert by_name["lease_owner"]["nullable"] is True
