"""How generation jobs fail against the local Meshy double: failed Meshy tasks, HTTP errors, a rejected
API key, and the message each failure gives the user."""

from __future__ import annotations

import logging
import time

import pytest

from bot.services.generate3d.progress import WAITING_FOR_MESHY, stage_line
from bot.services.generate3d.service import failure_message
from inference.remote.meshy import MeshyStatus, MeshyTask, MeshyTaskFailed
from storage.models import GenerationJob, JobState
from tests.services.generate3d.parts import Env, request


async def test_failed_meshy_task_fails_the_job_with_its_reason(env: Env) -> None:
    env.meshy.fail_next_tasks(1, message="The server is busy. Please try again later.", mode="preview")
    service = env.service()
    job = await service.submit(request())
    done = await service.wait(job.id)
    assert done.state is JobState.FAILED
    assert done.error is not None and "server is busy" in done.error and "not charged" in done.error
    assert env.events[-1].state is JobState.FAILED and env.events[-1].error == done.error


@pytest.mark.parametrize(
    ("status", "expected"),
    [(402, "out of credits (402)"), (403, "refused this request"), (500, "server error")],
)
async def test_meshy_errors_give_specific_messages(env: Env, status: int, expected: str) -> None:
    env.meshy.inject_error(status, method="POST", count=5)
    service = env.service(create_attempts=1)
    job = await service.submit(request())
    done = await service.wait(job.id)
    assert done.state is JobState.FAILED
    assert done.error is not None and expected in done.error


async def test_a_rejected_key_fails_with_the_operator_hint(env: Env) -> None:
    service = env.service(api_key="msy_wrong_key")
    job = await service.submit(request())
    done = await service.wait(job.id)
    assert done.state is JobState.FAILED
    assert done.error is not None and "MESHY_API_KEY" in done.error


def test_failure_messages_name_the_cause() -> None:
    failed = MeshyTask.from_json(
        {"id": "t", "status": "FAILED", "task_error": {"message": "Internal error."}}
    )
    assert "Internal error." in failure_message(MeshyTaskFailed(failed))
    canceled = MeshyTask(id="t", status=MeshyStatus.CANCELED)
    assert "canceled" in failure_message(MeshyTaskFailed(canceled))
    assert "Lumi's side" in failure_message(RuntimeError("boom"))


async def test_a_meshy_that_never_answers_shows_waiting_then_fails_soon(env: Env) -> None:
    env.meshy.hang_next(100)  # every request: accepted, never answered
    service = env.service(request_timeout_s=0.2, create_backoff_s=0.05, meshy_wait_notice_s=0.1)
    started = time.monotonic()
    job = await service.submit(request())
    done = await service.wait(job.id)
    assert done.state is JobState.FAILED
    assert done.error is not None and "did not answer in time" in done.error
    # One create (0.2 s), then three task searches (0.2 s each, retried once) that cannot tell whether
    # it made a task: no second create without knowing. About 1.5 s.
    assert time.monotonic() - started < 10
    waiting = [event for event in env.events if event.job_id == job.id and event.detail == WAITING_FOR_MESHY]
    assert waiting and waiting[0].state is JobState.PREVIEW
    assert stage_line(waiting[0]) == "Generating the shape · waiting for Meshy"
    assert len(env.meshy.create_requests) == 1


async def test_an_oversized_task_id_is_neither_stored_nor_logged(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.meshy.huge_task_ids_next(3, size=9 * 1024 * 1024)  # over the 8 MB an answer may have
    service = env.service(create_backoff_s=0.05)
    with caplog.at_level(logging.DEBUG):
        job = await service.submit(request())
        done = await service.wait(job.id)
    assert done.state is JobState.FAILED
    assert done.error is not None and "could not read" in done.error
    async with env.database.session() as session:
        row = await session.get(GenerationJob, job.id)
    assert row is not None and row.preview_task_id is None
    assert max(len(record.getMessage()) for record in caplog.records) < 2000
