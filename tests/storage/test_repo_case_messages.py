"""One moderation case per Discord message (migration 0002), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from storage import migrate
from storage.db import Database
from storage.repo import cases as repo_cases
from tests.fakes.databases import run_sql

GUILD = 111_111_111_111_111_111
OTHER_GUILD = 222_222_222_222_222_222
MESSAGE = 1_234_567_890_123_456_789


async def test_a_second_case_for_one_message_is_refused(database: Database) -> None:
    async with database.session() as session:
        first = await repo_cases.create_case(
            session=session, guild_id=GUILD, channel_id=1, author_id=2, message_id=MESSAGE
        )
        await session.commit()
    async with database.session() as session:
        with pytest.raises(repo_cases.CaseExists) as refused:
            await repo_cases.create_case(
                session=session, guild_id=GUILD, channel_id=1, author_id=2, message_id=MESSAGE
            )
    assert (refused.value.guild_id, refused.value.message_id) == (GUILD, MESSAGE)
    async with database.session() as session:
        # Other guilds, and cases without a message (data deleted, slash-command scans), are not limited.
        other = await repo_cases.create_case(
            session=session, guild_id=OTHER_GUILD, channel_id=1, author_id=2, message_id=MESSAGE
        )
        for _ in range(2):
            await repo_cases.create_case(session=session, guild_id=GUILD, channel_id=1, author_id=2)
        await session.commit()
        listed = await repo_cases.list_cases(session=session, guild_id=GUILD)
    assert first.case_number == 1 and other.case_number == 1
    assert [case.case_number for case in listed] == [3, 2, 1]


async def test_two_creators_racing_for_one_message_make_one_case(database: Database) -> None:
    async def create() -> int | None:
        async with database.session() as session:
            try:
                case = await repo_cases.create_case(
                    session=session, guild_id=GUILD, channel_id=1, author_id=2, message_id=MESSAGE
                )
            except repo_cases.CaseExists:
                return None
            # The other creator's insert meets this uncommitted row and waits for the commit.
            await asyncio.sleep(0.05)
            await session.commit()
            return case.case_number

    outcomes = await asyncio.gather(create(), create(), create())
    assert sorted(outcomes, key=lambda n: n or 0) == [None, None, 1]
    async with database.session() as session:
        count = (await run_sql(session, "SELECT count(*) FROM moderation_case")).scalar_one()
    assert count == 1


async def test_the_migration_keeps_the_oldest_case_of_a_message_linked(fresh_database: Database) -> None:
    url = fresh_database.engine.url.render_as_string(hide_password=False)
    await fresh_database.close()
    await migrate.downgrade(url, "0001")
    before = Database(url)
    try:
        async with before.session() as session:
            for _ in range(3):
                await repo_cases.create_case(
                    session=session, guild_id=GUILD, channel_id=1, author_id=2, message_id=MESSAGE
                )
            await session.commit()
    finally:
        await before.close()
    await migrate.upgrade(url)
    after = Database(url)
    try:
        async with after.session() as session:
            rows = await run_sql(session, "SELECT case_number, message_id FROM moderation_case ORDER BY id")
            assert [tuple(row) for row in rows] == [(1, MESSAGE), (2, None), (3, None)]
        assert await migrate.current(after.engine) == migrate.head_revision()
    finally:
        await after.close()
