"""The Meshy tasks of a claimed 3D job taken over by another worker while a create request was on its way
(distributed mode, PostgreSQL): still one task per stage, whichever worker created it."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.services.generate3d.job_rows import claim_job, get_job, write_job
from bot.services.generate3d.service import GenerationService
from inference.remote.meshy import MeshyClient
from storage.models import JobState
from tests.services.generate3d.claimed import CLAIMS, reaches, worker_and_gateway
from tests.services.generate3d.parts import Env, request, wait_until

pytestmark = pytest.mark.postgres


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

    async def stopped() -> bool:
        return not worker.runner.is_running(job_id)

    await wait_until(stopped, 20)  # Meshy saw the DELETE; the worker ends once it has the answer
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


async def test_a_task_whose_worker_died_before_recording_it_is_adopted_behind_a_page_of_newer_tasks(
    two_processes: tuple[Env, Env],
) -> None:
    meshy = two_processes[0].meshy
    worker_env, gateway_env = two_processes
    gateway = gateway_env.service(**CLAIMS)
    await gateway.start()
    job = await gateway.submit(request(texture=False))
    # A worker claimed the job, sent its preview create request and died before it recorded the answer.
    epoch = await claim_job(gateway.database, job.id, "a-worker-that-died")
    assert epoch is not None
    prompt = "a small wooden treasure chest, carved lid"
    await write_job(
        gateway.database,
        job.id,
        epoch=epoch,
        state=JobState.PREVIEW,
        enhanced_prompt=prompt,
        options={**job.options, "preview_requested_at": int(time.time() * 1000)},
    )
    async with MeshyClient(meshy.api_key, base_url=meshy.base_url) as client:
        orphan = await client.create_preview(prompt)
        # Other jobs' tasks arrive before the takeover: more than one page (50) of Meshy's newest tasks.
        for index in range(60):
            await client.create_preview(f"a tin robot number {index}")

    worker = worker_env.service(**CLAIMS)
    await worker.start()
    await worker.resume_unfinished()
    await reaches(worker, job.id, JobState.DONE)

    row = await get_job(worker.database, job.id)
    assert row is not None and row.lease_epoch == epoch + 1
    assert row.preview_task_id == orphan
    assert [r.json["prompt"] for r in meshy.create_requests].count(prompt) == 1
