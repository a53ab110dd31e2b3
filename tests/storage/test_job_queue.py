import asyncio
import uuid

import pytest

from storage.db import Database
from storage.job_queue import JobQueue

pytestmark = pytest.mark.postgres


async def test_jobs_stored_at_the_same_moment_are_all_queued(database: Database) -> None:
    if database.backend != "postgresql":
        pytest.skip("the job queue runs on PostgreSQL only")
    queue = JobQueue(database.libpq_dsn)
    entrypoint = f"test-{uuid.uuid4().hex[:8]}"
    payloads = [f"job-{n}" for n in range(20)]
    try:
        added = await asyncio.gather(*(queue.enqueue(entrypoint, [payload]) for payload in payloads))
        statuses = await asyncio.gather(*(queue.queued(entrypoint, payload) for payload in payloads))
        again = await queue.enqueue(entrypoint, payloads)
    finally:
        await queue.close()
    assert added == [1] * len(payloads)
    assert statuses == ["queued"] * len(payloads)
    assert again == 0
