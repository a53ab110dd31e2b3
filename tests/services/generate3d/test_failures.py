"""How generation jobs fail against the local Meshy double: failed Meshy tasks, HTTP errors, a rejected
API key, and the message each failure gives the user."""

from __future__ import annotations

import pytest

from bot.services.generate3d.service import failure_message
from inference.remote.meshy import MeshyStatus, MeshyTask, MeshyTaskFailed
from storage.models import JobState
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
