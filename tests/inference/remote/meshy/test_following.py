"""The real Meshy client following tasks against the local Meshy double when things go wrong: broken or
refused streams, unknown tasks, deadlines, and tasks that fail or are canceled."""

from __future__ import annotations

import pytest

from inference.remote.meshy import (
    KIND_GET,
    KIND_STREAM,
    MeshyClient,
    MeshyDeadlineExceeded,
    MeshyStatus,
    MeshyTaskFailed,
    MeshyTaskNotFound,
)
from tests.fakes.meshy_api.faults import BUSY_MESSAGE
from tests.fakes.meshy_api.server import FakeMeshy
from tests.inference.remote.meshy.parts import _follow


@pytest.mark.parametrize("mode", ["reset", "eof"])
async def test_broken_stream_falls_back_to_polling(meshy: FakeMeshy, client: MeshyClient, mode: str) -> None:
    meshy.break_streams(after_events=2, mode=mode)
    task_id = await client.create_preview("a broken stream")
    task, updates = await _follow(client, task_id)

    assert task.succeeded and task.model_urls
    assert updates[-1].status is MeshyStatus.SUCCEEDED
    assert client.request_counts[KIND_STREAM] == 1
    assert client.request_counts[KIND_GET] >= 1
    assert meshy.count("GET", f"/text-to-3d/{task_id}") == client.request_counts[KIND_GET] + 1


async def test_refused_stream_falls_back_to_polling(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.inject_error(503, path_contains="/stream", count=5)
    task_id = await client.create_preview("no stream today")
    task, _ = await _follow(client, task_id)
    assert task.succeeded
    assert client.request_counts[KIND_STREAM] == 1


async def test_stream_error_event_for_unknown_task(meshy: FakeMeshy, client: MeshyClient) -> None:
    with pytest.raises(MeshyTaskNotFound) as caught:
        async for _ in client.stream_task("0000-unknown"):
            pass
    assert caught.value.status == 404
    with pytest.raises(MeshyTaskNotFound):
        await client.follow_task("0000-unknown", poll_initial=0.01, deadline=5.0)


async def test_deadline_gives_up(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.config.preview_s = 30.0
    task_id = await client.create_preview("a very slow cathedral")
    with pytest.raises(MeshyDeadlineExceeded) as caught:
        await client.follow_task(task_id, deadline=0.3)
    assert "too long" in caught.value.user_message


async def test_failed_task_is_returned_with_its_message(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.fail_next_tasks(message=BUSY_MESSAGE)
    task_id = await client.create_preview("this one fails")
    task, _ = await _follow(client, task_id)
    assert task.status is MeshyStatus.FAILED
    assert task.error_message == BUSY_MESSAGE
    with pytest.raises(MeshyTaskFailed) as caught:
        task.raise_for_failure()
    assert BUSY_MESSAGE in caught.value.user_message
    assert await client.balance() == 10_000  # FAILED refunds the credits


async def test_canceled_task_is_terminal(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.config.preview_s = 5.0
    task_id = await client.create_preview("cancel me")
    meshy.cancel(task_id)
    task, _ = await _follow(client, task_id)
    assert task.status is MeshyStatus.CANCELED
    with pytest.raises(MeshyTaskFailed):
        task.raise_for_failure()
