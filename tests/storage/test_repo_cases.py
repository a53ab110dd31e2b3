from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from storage.db import Database
from storage.models import CaseAction, CaseStatus, GuildSettings, ModerationCase
from storage.repo import cases as repo_cases
from storage.repo import guilds as repo_guilds
from tests.fakes.databases import run_sql
from tests.storage.rows import add_comment_row

GUILD = 111_111_111_111_111_111
OTHER_GUILD = 222_222_222_222_222_222
SNOWFLAKE = 1_234_567_890_123_456_789  # beyond 32 bits, as real Discord ids are


async def test_guild_settings_defaults_are_created_once(database: Database) -> None:
    async with database.session() as session:
        settings = await repo_guilds.get_guild_settings(session=session, guild_id=GUILD)
        again = await repo_guilds.get_guild_settings(session=session, guild_id=GUILD)
        await session.commit()
    assert again is settings
    assert settings.guild_id == GUILD
    assert settings.moderation_enabled is True
    assert settings.moderation_policy == {}
    assert settings.exempt_channel_ids == [] and settings.exempt_role_ids == []
    assert settings.comment_channel_ids == []
    assert (settings.comment_language, settings.comment_backend, settings.comment_cooldown_s) == (
        "ko",
        "local",
        30,
    )
    assert settings.generation_daily_user_limit is None
    assert settings.created_at.tzinfo == UTC
    async with database.session() as session:
        rows = (await session.exec(select(sa.func.count()).select_from(GuildSettings))).one()
    assert rows == 1


async def test_concurrent_first_reads_create_a_single_row(database: Database) -> None:
    async def first_read() -> int:
        async with database.session() as session:
            settings = await repo_guilds.get_guild_settings(session=session, guild_id=GUILD)
            await session.commit()
            return settings.guild_id

    assert await asyncio.gather(*(first_read() for _ in range(5))) == [GUILD] * 5


async def test_update_guild_settings_persists_and_refuses_bad_fields(database: Database) -> None:
    async with database.session() as session:
        before = await repo_guilds.get_guild_settings(session=session, guild_id=GUILD)
        created = before.created_at
        await repo_guilds.update_guild_settings(
            session=session,
            guild_id=GUILD,
            mod_channel_id=SNOWFLAKE,
            moderation_policy={"nudity": {"threshold": 0.8, "action": "delete"}},
            exempt_channel_ids=[SNOWFLAKE, 5],
            comment_cooldown_s=10,
        )
        with pytest.raises(TypeError, match="no field colour"):
            await repo_guilds.update_guild_settings(session=session, guild_id=GUILD, colour="red")
        with pytest.raises(ValueError, match="cannot be changed"):
            await repo_guilds.update_guild_settings(session=session, guild_id=GUILD, created_at=created)
        await session.commit()

    async with database.session() as session:
        settings = await repo_guilds.get_guild_settings(session=session, guild_id=GUILD)
    assert settings.mod_channel_id == SNOWFLAKE
    assert settings.moderation_policy == {"nudity": {"threshold": 0.8, "action": "delete"}}
    assert settings.exempt_channel_ids == [SNOWFLAKE, 5]
    assert settings.comment_cooldown_s == 10
    assert settings.updated_at >= settings.created_at


async def test_json_lists_mutated_in_place_are_saved_when_passed_to_update(database: Database) -> None:
    async with database.session() as session:
        settings = await repo_guilds.get_guild_settings(session=session, guild_id=GUILD)
        await session.commit()
    async with database.session() as session:
        settings = await repo_guilds.get_guild_settings(session=session, guild_id=GUILD)
        settings.comment_channel_ids.append(SNOWFLAKE)
        await repo_guilds.update_guild_settings(
            session=session, guild_id=GUILD, comment_channel_ids=settings.comment_channel_ids
        )
        await session.commit()
    async with database.session() as session:
        reloaded = await repo_guilds.get_guild_settings(session=session, guild_id=GUILD)
    assert reloaded.comment_channel_ids == [SNOWFLAKE]


async def test_cases_are_numbered_per_guild(database: Database) -> None:
    async with database.session() as session:
        first = await repo_cases.create_case(
            session=session, guild_id=GUILD, channel_id=1, author_id=SNOWFLAKE
        )
        second = await repo_cases.create_case(session=session, guild_id=GUILD, channel_id=1, author_id=2)
        elsewhere = await repo_cases.create_case(
            session=session, guild_id=OTHER_GUILD, channel_id=1, author_id=2
        )
        await session.commit()
    assert (first.case_number, second.case_number, elsewhere.case_number) == (1, 2, 1)
    assert first.id is not None and second.id is not None and first.id != second.id
    assert first.author_id == SNOWFLAKE
    assert first.status is CaseStatus.OPEN and first.action is CaseAction.NONE


async def test_concurrent_creators_get_distinct_numbers_and_keep_their_other_work(database: Database) -> None:
    savepoint_rollbacks = 0

    def count_rollback(*_args: object) -> None:
        nonlocal savepoint_rollbacks
        savepoint_rollbacks += 1

    event.listen(database.engine.sync_engine, "rollback_savepoint", count_rollback)

    async def create(index: int) -> int:
        async with database.session() as session:
            # Earlier work in the same transaction must survive a retried case insert.
            await add_comment_row(session, guild_id=GUILD, author_id=index, message_id=index)
            case = await repo_cases.create_case(
                session=session, guild_id=GUILD, channel_id=1, author_id=index
            )
            # Holding the transaction open makes the other creators compute the same number meanwhile.
            await asyncio.sleep(0.02)
            await session.commit()
            return case.case_number

    numbers = await asyncio.gather(*(create(index) for index in range(10)))
    assert sorted(numbers) == list(range(1, 11))
    async with database.session() as session:
        comments = (await run_sql(session, "SELECT count(*) FROM comment_record")).scalar_one()
        listed = await repo_cases.list_cases(session=session, guild_id=GUILD, limit=100)
    assert comments == 10
    assert [case.case_number for case in listed] == list(range(10, 0, -1))
    if database.backend == "postgresql":
        assert savepoint_rollbacks > 0, "the creators never raced; the retry path went untested"


async def test_case_number_is_unique_per_guild_in_the_schema(database: Database) -> None:
    async with database.session() as session:
        await repo_cases.create_case(session=session, guild_id=GUILD, channel_id=1, author_id=2)
        await session.commit()
        with pytest.raises(IntegrityError):
            await session.exec(
                sa.insert(ModerationCase).values(guild_id=GUILD, case_number=1, channel_id=1, author_id=2)
            )


async def test_get_list_and_update_cases(database: Database) -> None:
    async with database.session() as session:
        case = await repo_cases.create_case(
            session=session,
            guild_id=GUILD,
            channel_id=1,
            message_id=SNOWFLAKE,
            author_id=2,
            status=CaseStatus.AUTO_ACTIONED,
            action=CaseAction.DELETED,
            scores={"nudity": 0.97, "violence": 0.1},
            labels=[{"label": "EXPOSED_BREAST_F", "score": 0.91, "box": [1, 2, 3, 4]}],
            reason="nudity 0.97 over 0.85",
            image_phash="f0e1d2c3b4a59687",
        )
        await repo_cases.create_case(session=session, guild_id=GUILD, channel_id=1, author_id=3)
        await session.commit()

    async with database.session() as session:
        loaded = await repo_cases.get_case(session=session, guild_id=GUILD, case_number=case.case_number)
        assert loaded is not None
        assert loaded.scores == {"nudity": 0.97, "violence": 0.1}
        assert loaded.labels[0]["box"] == [1, 2, 3, 4]
        assert loaded.message_id == SNOWFLAKE
        assert (
            await repo_cases.get_case(session=session, guild_id=OTHER_GUILD, case_number=case.case_number)
            is None
        )
        assert (await repo_cases.get_case_by_id(session=session, case_id=case.id or 0)) is loaded

        auto = await repo_cases.list_cases(session=session, guild_id=GUILD, status=CaseStatus.AUTO_ACTIONED)
        assert [c.case_number for c in auto] == [1]
        assert [
            c.case_number for c in await repo_cases.list_cases(session=session, guild_id=GUILD, limit=1)
        ] == [2]
        assert [
            c.case_number for c in await repo_cases.list_cases(session=session, guild_id=GUILD, author_id=3)
        ] == [2]

        await repo_cases.update_case(session=session, case=loaded, status="confirmed", decided_by=SNOWFLAKE)
        assert loaded.status is CaseStatus.CONFIRMED
        assert loaded.decided_at is not None
        with pytest.raises(ValueError, match="case_number cannot be changed"):
            await repo_cases.update_case(session=session, case=loaded, case_number=9)
        with pytest.raises(ValueError):
            await repo_cases.update_case(session=session, case=loaded, status="maybe")
        await session.commit()

    async with database.session() as session:
        confirmed = await repo_cases.list_cases(session=session, guild_id=GUILD, status=CaseStatus.CONFIRMED)
    assert [c.decided_by for c in confirmed] == [SNOWFLAKE]


async def test_image_hashes_and_expired_evidence(database: Database) -> None:
    now = datetime(2030, 6, 1, tzinfo=UTC)
    async with database.session() as session:
        old = await repo_cases.create_case(
            session=session,
            guild_id=GUILD,
            channel_id=1,
            author_id=2,
            evidence_key="evidence/old.jpg",
            evidence_expires_at=now - timedelta(seconds=1),
        )
        await repo_cases.create_case(
            session=session,
            guild_id=GUILD,
            channel_id=1,
            author_id=2,
            evidence_key="evidence/new.jpg",
            evidence_expires_at=now + timedelta(days=1),
        )
        await repo_cases.create_case(session=session, guild_id=GUILD, channel_id=1, author_id=2)
        await repo_cases.add_image_hash(session=session, guild_id=GUILD, phash="aaaa", case_id=old.id)
        await repo_cases.add_image_hash(session=session, guild_id=GUILD, phash="bbbb")
        await repo_cases.add_image_hash(session=session, guild_id=OTHER_GUILD, phash="cccc")
        await session.commit()

    async with database.session() as session:
        expired = await repo_cases.expired_evidence(session=session, now=now)
        hashes = await repo_cases.list_image_hashes(session=session, guild_id=GUILD)
    assert [case.evidence_key for case in expired] == ["evidence/old.jpg"]
    assert [(h.phash, h.case_id) for h in hashes] == [("aaaa", old.id), ("bbbb", None)]


async def test_image_hash_must_point_at_an_existing_case(database: Database) -> None:
    async with database.session() as session:
        with pytest.raises(IntegrityError):
            await repo_cases.add_image_hash(session=session, guild_id=GUILD, phash="dead", case_id=424242)
