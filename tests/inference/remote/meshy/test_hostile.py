"""A hostile or broken Meshy-compatible server: oversized task ids, fields Lumi must not store as sent,
answers that never come. The client refuses or caps each, quickly and with a short message."""

from __future__ import annotations

import time

import pytest

from inference.remote.meshy import (
    KIND_CREATE,
    KIND_GET,
    MeshyClient,
    MeshyProtocolError,
    MeshyTask,
    MeshyTimeout,
    RetryPolicy,
)
from inference.remote.meshy.fields import MAX_RESPONSE_BYTES
from tests.fakes.meshy_api.server import FakeMeshy
from tests.inference.remote.meshy.parts import FAST_RETRY


async def test_a_50_mb_task_id_is_refused_unread_with_a_short_message(
    meshy: FakeMeshy, client: MeshyClient
) -> None:
    meshy.huge_task_ids_next(1)
    with pytest.raises(MeshyProtocolError) as caught:
        await client.create_preview("a small wooden treasure chest")
    message = str(caught.value)
    assert f"larger than {MAX_RESPONSE_BYTES // (1024 * 1024)} MB" in message and len(message) < 300
    assert "could not read" in caught.value.user_message


async def test_an_oversized_or_odd_task_id_is_refused(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.huge_task_ids_next(1, size=129)  # small enough to read, too long to store
    with pytest.raises(MeshyProtocolError, match="a task id of 129 characters"):
        await client.create_preview("a small wooden treasure chest")
    with pytest.raises(MeshyProtocolError, match="characters other than"):
        MeshyTask.from_json({"id": "../../etc/passwd", "status": "SUCCEEDED"})
    with pytest.raises(MeshyProtocolError, match="no task id"):
        MeshyTask.from_json({"id": 12, "status": "SUCCEEDED"})


def test_remote_fields_are_validated_and_capped() -> None:
    task = MeshyTask.from_json(
        {
            "id": "018a210d-8ba4-705c-b111-1f1776f7f578",
            "status": "FAILED",
            "type": "text-to-3d-preview\n2026-01-01 ERROR forged log line" + "x" * 1000,
            "progress": 250,
            "preceding_tasks": -5,
            "model_urls": {
                "glb": "https://assets.meshy.ai/m.glb?Signature=abc",
                "obj": "javascript:alert(1)",
                "fbx": "https://" + "a" * 5000 + ".example/m.fbx",
                "../evil": "https://assets.meshy.ai/e.glb",
                "usdz": "https://assets.meshy.ai/with space.usdz",
            },
            "thumbnail_url": "file:///etc/passwd",
            "video_url": "https://assets.meshy.ai/v.mp4",
            "texture_urls": [{"base_color": "https://assets.meshy.ai/t.png"}] * 100,
            "prompt": "p" * 100_000,
            "created_at": float("inf"),
            "finished_at": "1" * 400,
            "consumed_credits": 1e300,
            "task_error": {"message": "line one\nline two\x1b[31m " + "e" * 10_000},
        }
    )
    assert task.type.startswith("text-to-3d-preview 2026-01-01") and len(task.type) == 64
    assert "\n" not in task.type
    assert task.progress == 100 and task.preceding_tasks == 0
    assert task.model_urls == {"glb": "https://assets.meshy.ai/m.glb?Signature=abc"}
    assert task.thumbnail_url is None and task.video_url == "https://assets.meshy.ai/v.mp4"
    assert len(task.texture_urls) == 8
    assert len(task.prompt) == 1200
    assert task.created_at == 0 and task.finished_at == 0 and task.consumed_credits is None
    assert task.error_message.startswith("line one line two[31m") and len(task.error_message) == 500
    assert all(char.isprintable() for char in task.error_message)
    # A number beyond any real count is noise, not progress.
    assert MeshyTask.from_json({"id": "t1", "status": "IN_PROGRESS", "progress": 10**30}).progress == 0


async def test_a_server_that_never_answers_times_out_each_request_soon(meshy: FakeMeshy) -> None:
    meshy.hang_next(10)
    retry = RetryPolicy(max_retries=3, backoff_initial=0.01, backoff_max=0.05)
    async with MeshyClient(meshy.api_key, base_url=meshy.base_url, timeout=0.2, retry=retry) as stuck:
        started = time.monotonic()
        with pytest.raises(MeshyTimeout, match=r"no answer within 0.2 s"):
            await stuck.get_task("018a210d-8ba4-705c-b111-1f1776f7f578")
        # One retry for a timeout, not three: silence twice means the server is not answering.
        assert stuck.request_counts[KIND_GET] == 2
        with pytest.raises(MeshyTimeout):
            await stuck.create_preview("may or may not exist")
        assert stuck.request_counts[KIND_CREATE] == 1
        assert time.monotonic() - started < 3.0
    assert meshy.held_requests == 3


async def test_other_transient_errors_keep_their_retries(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.inject_error(503, method="GET", count=3)
    assert await client.balance() > 0
    assert client.request_counts["GET /openapi/v1/balance"] == 1 + FAST_RETRY.max_retries
