"""A 3D request is admitted once: its prompt checked and its quotas read a single time, however it arrives
(the `/3d create` path admits, defers and submits the admission; the command line submits a request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from bot.services.generate3d.service import Admission, GenerationService, QuotaExceeded
from storage.db import Database
from storage.models import GenerationJob
from storage.repo import guilds as repo_guilds
from tests.services.generate3d.parts import GUILD, Env, request


@contextmanager
def statements_run(database: Database) -> Iterator[list[str]]:
    """Every SQL statement the database runs inside the block, as sent to the driver."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split()).lower())

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def admit_then_submit(service: GenerationService) -> GenerationJob:
    admission = await service.admit(request())
    return await service.submit(admission.shown_in(4242))


async def submit_a_request(service: GenerationService) -> GenerationJob:
    return await service.submit(request())


@pytest.mark.parametrize("start", [admit_then_submit, submit_a_request])
async def test_quotas_are_read_once_per_request(
    env: Env, start: Callable[[GenerationService], Awaitable[GenerationJob]]
) -> None:
    env.meshy.config.preview_s = 5.0  # the job stays running, so the runner adds no statement of its own
    async with env.database.session() as session:
        # A guild with limits of its own, read with the quotas.
        await repo_guilds.update_guild_settings(
            session=session, guild_id=GUILD, generation_daily_user_limit=5
        )
        await session.commit()
    service = env.service()
    with statements_run(env.database) as seen:
        job = await start(service)
        inserts = [sql for sql in seen if sql.startswith("insert into generation_job")]
        guild_reads = [sql for sql in seen if "from guild_settings" in sql]
        counts = [sql for sql in seen if sql.startswith("select count(") and "from generation_job" in sql]
    assert len(inserts) == 1
    assert len(guild_reads) == 1, guild_reads
    # The user's unfinished jobs, the user's jobs today, the guild's jobs today: once each.
    assert len(counts) == 3, counts
    assert job.guild_id == GUILD
    if start is admit_then_submit:
        assert job.message_id == 4242


async def test_an_admission_carries_the_request_and_the_prompt_verdict(env: Env) -> None:
    service = env.service(daily_user_limit=1)
    admission = await service.admit(request("a copper kettle"))
    assert isinstance(admission, Admission) and admission.verdict is not None and admission.verdict.allowed
    assert admission.request.prompt == "a copper kettle" and admission.request.message_id is None
    assert admission.shown_in(7).request.message_id == 7 and admission.request.message_id is None
    vouched = await service.admit(request("a copper kettle"), checked=True)
    assert vouched.verdict is None
    await service.submit(admission)
    # The admission was the quota check; the next request meets the limit the first one used up.
    with pytest.raises(QuotaExceeded, match="1 3D generations for today"):
        await service.admit(request())
