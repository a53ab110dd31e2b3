"""3D jobs claimed across processes on one PostgreSQL (distributed mode), with two services standing for two
processes (each its own engine, job queue and LISTEN connection) and the local Meshy double.

What a process boundary adds (SIGKILL, SIGSTOP) is in tests/e2e/test_distributed_jobs.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.services.generate3d import claims
from bot.services.generate3d.job_rows import claim_job, get_job, write_job
from bot.services.generate3d.progress import JobSnapshot
from bot.services.generate3d.service import GenerationService
from bot.services.generate3d.shapes import LeaseLost
from storage.db import Database
from storage.models import GenerationJob, JobState
from tests.services.generate3d.parts import Env, request, two_processes_on, wait_until

pytestmark = pytest.mark.postgres

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


async def test_a_job_submitted_in_one_process_runs_in_the_worker_that_claims_it(
    two_processes: tuple[Env, Env],
) -> None:
    worker, gateway = await worker_and_gateway(two_processes)
    meshy = two_processes[0].meshy

    job = await gateway.submit(request(texture=True))
    assert not gateway.runner.is_running(job.id)
    await reaches(worker, job.id, JobState.DONE)

    row = await get_job(worker.database, job.id)
    assert row is not None
    assert row.lease_epoch == 1
    assert worker.claims is not None and row.lease_owner == worker.claims.owner
    assert [r.json["mode"] for r in meshy.create_requests] == ["preview", "refine"]

    async def queue_empty() -> bool:
        return await queue_rows(worker.database) == []

    # Done and gone from the queue; a reconcile finds nothing to queue again.
    await wait_until(queue_empty, 10)
    assert await worker.claims.reconcile() == 0


async def test_reconcile_queues_each_unfinished_job_once(two_processes: tuple[Env, Env]) -> None:
    worker_env, _ = two_processes
    service = worker_env.service(**CLAIMS)  # no worker running: the jobs stay queued
    first = await service.submit(request())
    second = await service.submit(request(prompt="a tin robot"))
    assert service.claims is not None
    # Lost enqueues (a crash between commit and enqueue) are what the reconcile is for.
    async with service.database.engine.begin() as connection:
        await connection.execute(sa.text("DELETE FROM pgqueuer"))
    assert await service.claims.reconcile() == 2
    assert await service.claims.reconcile() == 0
    assert sorted(await queue_rows(service.database)) == sorted([(first.id, "queued"), (second.id, "queued")])


async def test_cancel_in_another_process_stops_the_worker_at_once(two_processes: tuple[Env, Env]) -> None:
    meshy = two_processes[0].meshy
    worker, gateway, job = await job_in_its_preview(two_processes)
    assert worker.runner.is_running(job.id)

    await gateway.cancel(job.id, user_id=1)

    async def stopped() -> bool:
        return not worker.runner.is_running(job.id)

    # The notification stops it, long before the preview would end (or a write would notice).
    await wait_until(stopped, 3)
    row = await get_job(worker.database, job.id)
    assert row is not None and row.state is JobState.CANCELED
    assert [r.json["mode"] for r in meshy.create_requests] == ["preview"]


async def test_progress_of_a_job_reaches_subscribers_in_other_processes(
    two_processes: tuple[Env, Env],
) -> None:
    meshy = two_processes[0].meshy
    meshy.config.preview_s = 1.5
    _worker, gateway = await worker_and_gateway(two_processes)
    seen: list[JobSnapshot] = []
    job = await gateway.submit(request(texture=False))
    async with gateway.subscribe(job.id) as queue:
        while True:
            snapshot = await asyncio.wait_for(queue.get(), 20)
            seen.append(snapshot)
            if snapshot.is_terminal:
                break
    assert seen[-1].state is JobState.DONE
    assert any(s.state is JobState.PREVIEW and 0 < s.progress < 100 for s in seen), seen
    # Remote snapshots are for subscribers only: the gateway's listeners (Discord edits) heard nothing.
    assert not [e for e in two_processes[1].events if e.job_id == job.id]


async def test_a_worker_whose_claim_moved_on_stops_without_writing_or_asking_meshy(
    two_processes: tuple[Env, Env],
) -> None:
    meshy = two_processes[0].meshy
    worker, gateway, job = await job_in_its_preview(two_processes)

    # Another worker takes the job over (as one does once this one's heartbeat is stale).
    assert await claim_job(gateway.database, job.id, "another-worker") == 2
    claimed = await get_job(gateway.database, job.id)

    async def stopped() -> bool:
        return not worker.runner.is_running(job.id)

    await wait_until(stopped, 5)
    # Nor does it edit the job's message any more: the new holder shows it.
    assert not await worker.may_show(job.id)
    requests = len(meshy.requests)
    await asyncio.sleep(1.0)
    row = await get_job(gateway.database, job.id)
    assert claimed is not None and row is not None
    assert (row.lease_owner, row.updated_at, row.progress) == (
        "another-worker",
        claimed.updated_at,
        claimed.progress,
    )
    assert len(meshy.requests) == requests
    assert [r.json["mode"] for r in meshy.create_requests] == ["preview"]


async def test_a_stopping_worker_hands_its_job_to_another_which_finishes_it(
    two_processes: tuple[Env, Env],
) -> None:
    meshy = two_processes[0].meshy
    meshy.config.preview_s = 3.0
    first, second_env = two_processes[0].service(**CLAIMS), two_processes[1]
    await first.start()
    await first.resume_unfinished()
    job = await first.submit(request(texture=True))
    await asyncio.wait_for(meshy.stream_opened.wait(), 20)

    await first.close()
    assert await queue_rows(first.database) == [(job.id, "queued")]

    second = second_env.service(**CLAIMS)
    await second.start()
    await second.resume_unfinished()
    await reaches(second, job.id, JobState.DONE)
    row = await get_job(second.database, job.id)
    assert row is not None and row.lease_epoch == 2
    assert [r.json["mode"] for r in meshy.create_requests] == ["preview", "refine"]


async def take_queue_row(database: Database, job_id: str) -> str:
    """Re-claim the job's queue row as another worker's queue manager does once a heartbeat is stale;
    returns that manager's id. Its heartbeat is set far ahead, so any later heartbeat shows and no worker
    finds the row stale."""
    async with database.engine.begin() as connection:
        row = await connection.execute(
            sa.text(
                "UPDATE pgqueuer SET queue_manager_id = gen_random_uuid(), "
                "heartbeat = '2100-01-01T00:00:00Z' WHERE dedupe_key = :key AND status = 'picked' "
                "RETURNING queue_manager_id::text"
            ),
            {"key": job_id},
        )
        return str(row.scalar_one())


async def queue_row(database: Database, job_id: str) -> tuple[str, str, int] | None:
    async with database.engine.connect() as connection:
        row = await connection.execute(
            sa.text(
                "SELECT status::text, queue_manager_id::text, EXTRACT(YEAR FROM heartbeat)::int "
                "FROM pgqueuer WHERE dedupe_key = :key"
            ),
            {"key": job_id},
        )
        found = row.first()
        return None if found is None else (str(found[0]), str(found[1]), int(found[2]))


async def test_a_worker_whose_job_was_claimed_again_leaves_the_new_owners_queue_row_alone(
    two_processes: tuple[Env, Env],
) -> None:
    worker, gateway, job = await job_in_its_preview(two_processes)

    # The queue row moves to another worker while this one still runs the job: its heartbeats (every
    # second with a 2 s timeout) no longer touch the row.
    other = await take_queue_row(gateway.database, job.id)
    await asyncio.sleep(2.5)
    assert await queue_row(gateway.database, job.id) == ("picked", other, 2100)

    # Then the job row's lease too: the worker stops, and its "done" does not delete the new owner's row.
    await claim_job(gateway.database, job.id, "another-worker")

    async def stopped() -> bool:
        return not worker.runner.is_running(job.id)

    await wait_until(stopped, 5)
    await asyncio.sleep(1.0)
    assert await queue_row(gateway.database, job.id) == ("picked", other, 2100)


async def test_a_worker_stopping_after_its_job_was_claimed_again_does_not_queue_it_again(
    two_processes: tuple[Env, Env],
) -> None:
    worker, gateway, job = await job_in_its_preview(two_processes)

    other = await take_queue_row(gateway.database, job.id)
    await claim_job(gateway.database, job.id, "another-worker")
    # Stopped cleanly before it noticed: its hand-back would make the new owner's row "queued" again.
    await worker.close()
    assert await queue_row(gateway.database, job.id) == ("picked", other, 2100)


async def test_a_delete_in_another_process_waits_for_the_worker_to_stop_first(
    two_processes: tuple[Env, Env], monkeypatch: pytest.MonkeyPatch
) -> None:
    meshy = two_processes[0].meshy
    worker, gateway, job = await job_in_its_preview(two_processes)
    assert worker.runner.is_running(job.id)

    async def lost(database: Database, channel: str, payload: str) -> None:
        """The stop notification never arrives (NOTIFY is best effort): the worker learns from the row."""

    monkeypatch.setattr(claims, "notify", lost)
    await gateway.delete(job.id, user_id=1)

    # By the time the delete returns, the worker has let go of the job: nothing of it is left anywhere.
    assert not worker.runner.is_running(job.id)
    assert await queue_rows(gateway.database) == []
    assert await get_job(gateway.database, job.id) is None
    assert [r.json["mode"] for r in meshy.create_requests] == ["preview"]


async def test_a_worker_whose_job_was_deleted_while_its_files_came_in_removes_them(
    two_processes: tuple[Env, Env],
) -> None:
    env = two_processes[0]
    worker, gateway = await worker_and_gateway(two_processes)
    job = await gateway.submit(request(texture=False))
    await reaches(worker, job.id, JobState.PREVIEW)
    # Every answer now takes a while, the file downloads too: the job sits in its downloading stage.
    env.meshy.config.response_delay_s = 0.5
    await reaches(worker, job.id, JobState.DOWNLOADING)
    # Deleted behind the worker's back (as when a delete gave up waiting for a stalled worker).
    async with gateway.database.engine.begin() as connection:
        await connection.execute(sa.text("DELETE FROM generation_job WHERE id = :id"), {"id": job.id})

    async def stopped() -> bool:
        return not worker.runner.is_running(job.id)

    await wait_until(stopped, 20)
    assert [path for path in (env.tmp / "blobs" / "jobs" / job.id).rglob("*") if path.is_file()] == []
    async with gateway.database.engine.connect() as connection:
        assets = await connection.execute(
            sa.text("SELECT count(*) FROM stored_asset WHERE owner_id = :id"), {"id": job.id}
        )
        assert assets.scalar_one() == 0


async def create_in_flight_then_taken_over(two_processes: tuple[Env, Env]) -> tuple[GenerationService, str]:
    """A worker's preview create request is on its way (Meshy answers slowly) when another worker claims
    the job; returns the first worker and the job id."""
    meshy = two_processes[0].meshy
    meshy.config.preview_s = 30.0
    worker, gateway = await worker_and_gateway(two_processes)
    meshy.config.response_delay_s = 1.5
    job = await gateway.submit(request(texture=True))

    async def sent() -> bool:
        return len(meshy.create_requests) == 1

    await wait_until(sent, 20)
    assert not meshy.tasks
    assert await claim_job(gateway.database, job.id, "another-worker") == 2
    return worker, job.id


async def test_a_task_created_after_its_worker_lost_the_job_is_deleted_when_the_new_holder_made_its_own(
    two_processes: tuple[Env, Env],
) -> None:
    meshy = two_processes[0].meshy
    worker, job_id = await create_in_flight_then_taken_over(two_processes)
    # The new holder found no task of the job at Meshy yet, and created (and recorded) its own.
    await write_job(worker.database, job_id, epoch=2, preview_task_id="the-new-holders-task")

    async def deleted() -> bool:
        return meshy.count("DELETE") == 1 and not meshy.tasks

    # The first worker's create lands after all: it cannot record the task, and deletes it at Meshy.
    await wait_until(deleted, 20)
    (delete,) = [r for r in meshy.requests if r.method == "DELETE"]
    assert not worker.runner.is_running(job_id)
    row = await get_job(worker.database, job_id)
    assert row is not None and row.preview_task_id == "the-new-holders-task" and row.lease_epoch == 2
    assert "the-new-holders-task" not in delete.path


async def test_a_task_created_after_its_worker_lost_the_job_is_kept_when_the_new_holder_adopted_it(
    two_processes: tuple[Env, Env],
) -> None:
    meshy = two_processes[0].meshy
    worker, job_id = await create_in_flight_then_taken_over(two_processes)

    async def created() -> bool:
        return len(meshy.tasks) == 1

    # The new holder found the task at Meshy (its request time is on the row) and adopted it.
    await wait_until(created, 20)
    (task_id,) = meshy.tasks
    await write_job(worker.database, job_id, epoch=2, preview_task_id=task_id)

    async def stopped() -> bool:
        return not worker.runner.is_running(job_id)

    await wait_until(stopped, 20)
    await asyncio.sleep(1.0)
    assert meshy.count("DELETE") == 0
    assert list(meshy.tasks) == [task_id]


async def test_a_lease_found_lost_still_fences_the_writes_of_the_task_that_held_it(
    two_processes: tuple[Env, Env],
) -> None:
    meshy = two_processes[0].meshy
    # Held at 40 %: no progress reaches the job's task, so it checks nothing by itself meanwhile.
    meshy.hold("preview", at_progress=40)
    worker, gateway = await worker_and_gateway(two_processes)
    job = await gateway.submit(request(texture=True))
    await asyncio.wait_for(meshy.stream_opened.wait(), 20)
    await asyncio.sleep(0.3)
    await claim_job(gateway.database, job.id, "another-worker")
    leases = worker.runner.leases
    leases.trust_s = 0.0

    # The message edit is the first to notice (as when a paused worker wakes with an edit waiting) ...
    assert not await worker.may_show(job.id)
    # ... and the job's task, still running here, can neither pass a lease check nor write the row.
    assert worker.runner.is_running(job.id) and leases.epoch(job.id) == 1
    with pytest.raises(LeaseLost):
        await leases.confirm(job.id)
    with pytest.raises(LeaseLost):
        await worker.runner.save(job.id, progress=99)
    row = await get_job(gateway.database, job.id)
    assert row is not None and row.progress != 99 and row.lease_owner == "another-worker"
