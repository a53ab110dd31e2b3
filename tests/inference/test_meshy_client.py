"""The real Meshy client over real HTTP against the local Meshy double."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trimesh
from PIL import Image

from inference.remote.meshy import (
    KIND_CREATE,
    KIND_GET,
    KIND_STREAM,
    MESHY_TEST_MODE_KEY,
    MeshyAssetUnavailable,
    MeshyAuthError,
    MeshyBadRequest,
    MeshyClient,
    MeshyConnectionError,
    MeshyDeadlineExceeded,
    MeshyDownloadTooLarge,
    MeshyForbidden,
    MeshyNoCredits,
    MeshyQueueFull,
    MeshyRateLimited,
    MeshyServerError,
    MeshyStatus,
    MeshyTask,
    MeshyTaskFailed,
    MeshyTaskNotFound,
    MeshyTimeout,
    RetryPolicy,
    SseParser,
)
from tests.fakes.meshy_faults import BUSY_MESSAGE
from tests.fakes.meshy_server import FakeMeshy, FakeMeshyConfig
from tests.fakes.meshy_tasks import SAMPLE_PREVIEW_ID

FAST_RETRY = RetryPolicy(max_retries=3, backoff_initial=0.01, backoff_max=0.05)


@pytest.fixture
async def meshy() -> AsyncIterator[FakeMeshy]:
    config = FakeMeshyConfig(pending_s=0.05, preview_s=0.25, refine_s=0.25, keepalive_s=0.05)
    async with FakeMeshy(config=config) as server:
        yield server


@pytest.fixture
async def client(meshy: FakeMeshy) -> AsyncIterator[MeshyClient]:
    async with MeshyClient(
        meshy.api_key, base_url=meshy.base_url, timeout=5.0, stream_idle_timeout=2.0, retry=FAST_RETRY
    ) as meshy_client:
        yield meshy_client


async def _follow(
    client: MeshyClient, task_id: str, *, use_stream: bool = True
) -> tuple[MeshyTask, list[MeshyTask]]:
    updates: list[MeshyTask] = []

    async def record(task: MeshyTask) -> None:
        updates.append(task)

    task = await client.follow_task(
        task_id,
        on_update=record,
        poll_initial=0.02,
        poll_max=0.1,
        deadline=10.0,
        use_stream=use_stream,
    )
    return task, updates


# --------------------------------------------------------------------------------------- happy path


async def test_preview_then_refine_over_the_stream(meshy: FakeMeshy, client: MeshyClient) -> None:
    preview_id = await client.create_preview(
        "a monster mask", ai_model="meshy-5", topology="triangle", target_polycount=30000, should_remesh=True
    )
    preview, updates = await _follow(client, preview_id)

    assert preview.status is MeshyStatus.SUCCEEDED
    assert preview.type == "text-to-3d-preview"
    assert updates[0].status in (MeshyStatus.PENDING, MeshyStatus.IN_PROGRESS)
    assert MeshyStatus.IN_PROGRESS in {u.status for u in updates}
    progresses = [u.progress for u in updates]
    assert progresses == sorted(progresses) and progresses[-1] == 100
    assert {"glb", "fbx", "obj", "mtl", "usdz"} <= preview.model_urls.keys()
    assert preview.thumbnail_url and preview.texture_urls == []
    assert preview.created_at <= preview.started_at <= preview.finished_at

    refine_id = await client.create_refine(preview_id, enable_pbr=True, texture_prompt="green slimy skin")
    refined, _ = await _follow(client, refine_id)
    assert refined.succeeded and refined.is_refine
    assert refined.texture_prompt == "green slimy skin"
    assert set(refined.texture_urls[0]) == {"base_color", "metallic", "normal", "roughness"}

    bodies = [request.json for request in meshy.create_requests]
    assert bodies[0] == {
        "mode": "preview",
        "prompt": "a monster mask",
        "ai_model": "meshy-5",
        "should_remesh": True,
        "topology": "triangle",
        "target_polycount": 30000,
    }
    assert bodies[1] == {
        "mode": "refine",
        "preview_task_id": preview_id,
        "enable_pbr": True,
        "texture_prompt": "green slimy skin",
    }
    # SSE delivered everything: one create and one stream per task, no polling.
    assert client.request_counts == {KIND_CREATE: 2, KIND_STREAM: 2}
    assert meshy.count("POST") == 2 and meshy.count("GET") == 2


async def test_sse_keeps_request_count_low_compared_with_polling(
    meshy: FakeMeshy, client: MeshyClient
) -> None:
    ids = await asyncio.gather(*(client.create_preview(f"crate number {n}") for n in range(5)))
    await asyncio.gather(*(_follow(client, task_id) for task_id in ids))
    streamed = client.total_requests
    assert streamed == 10  # create + stream per job

    client.request_counts.clear()
    ids = await asyncio.gather(*(client.create_preview(f"barrel number {n}") for n in range(5)))
    await asyncio.gather(*(_follow(client, task_id, use_stream=False) for task_id in ids))
    assert client.request_counts[KIND_GET] > 5
    assert client.total_requests > streamed


async def test_keep_alive_resends_do_not_repeat_updates(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.config.keepalive_s = 0.01
    meshy.config.pending_s = 0.3
    raw_id, followed_id = await asyncio.gather(
        client.create_preview("a lantern"), client.create_preview("another")
    )

    async def collect() -> list[MeshyTask]:
        return [task async for task in client.stream_task(raw_id)]

    events, (_, updates) = await asyncio.gather(collect(), _follow(client, followed_id))
    assert len(events) > len({task.progress_key() for task in events})  # re-sends arrived
    keys = [update.progress_key() for update in updates]
    assert len(keys) == len(set(keys))


async def test_short_terminal_event_is_completed_with_one_get(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.config.stream_terminal_short = True
    task, _ = await _follow(client, await client.create_preview("short final event"))
    assert task.succeeded and "glb" in task.model_urls and task.prompt == "short final event"
    assert client.request_counts[KIND_GET] == 1


async def test_test_mode_key_returns_the_sample_task(meshy: FakeMeshy) -> None:
    async with MeshyClient(MESHY_TEST_MODE_KEY, base_url=meshy.base_url, retry=FAST_RETRY) as test_client:
        assert test_client.is_test_mode
        task_id = await test_client.create_preview("anything at all")
        assert task_id == SAMPLE_PREVIEW_ID
        task = await test_client.follow_task(task_id, deadline=5.0)
        assert task.succeeded and task.model_urls
    assert meshy.credits == 10_000


async def test_list_delete_and_balance(meshy: FakeMeshy, client: MeshyClient) -> None:
    first = await client.create_preview("first")
    await asyncio.sleep(0.01)
    second = await client.create_preview("second")
    assert await client.balance() == 10_000 - 2 * meshy.config.preview_cost

    newest_first = await client.list_tasks(page_num=1, page_size=10)
    assert [task.id for task in newest_first] == [second, first]
    oldest_first = await client.list_tasks(page_size=1, sort_by="+created_at")
    assert [task.id for task in oldest_first] == [first]
    assert await client.list_tasks(page_num=2, page_size=1, sort_by="+created_at") != oldest_first

    await client.delete_task(first)
    with pytest.raises(MeshyTaskNotFound):
        await client.get_task(first)
    assert [task.id for task in await client.list_tasks()] == [second]


# ------------------------------------------------------------------------------------ stream trouble


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


# ------------------------------------------------------------------------------------ error mapping


async def test_bad_key_is_401(meshy: FakeMeshy) -> None:
    async with MeshyClient("msy_wrong", base_url=meshy.base_url, retry=FAST_RETRY) as bad:
        with pytest.raises(MeshyAuthError) as caught:
            await bad.balance()
    assert caught.value.status == 401
    assert "API key" in caught.value.user_message
    assert meshy.count() == 1  # never retried


async def test_no_credits_is_402(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.credits = 5
    with pytest.raises(MeshyNoCredits) as caught:
        await client.create_preview("too expensive")
    assert caught.value.status == 402 and "credits" in caught.value.user_message


async def test_forbidden_and_not_found(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.inject_error(403)
    with pytest.raises(MeshyForbidden):
        await client.balance()
    with pytest.raises(MeshyTaskNotFound) as caught:
        await client.get_task("does-not-exist")
    assert "no longer knows" in caught.value.user_message


async def test_prompt_limits_are_checked_before_sending(meshy: FakeMeshy, client: MeshyClient) -> None:
    with pytest.raises(MeshyBadRequest) as caught:
        await client.create_preview("x" * 601)
    assert "600" in caught.value.user_message
    with pytest.raises(MeshyBadRequest):
        await client.create_preview("fine", target_polycount=50)
    with pytest.raises(MeshyBadRequest):
        await client.create_preview("fine", topology="hexagon")
    assert meshy.count() == 0
    assert await client.create_preview("x" * 600)


async def test_server_side_400_keeps_meshys_message(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.config.preview_s = 5.0
    preview_id = await client.create_preview("still running")
    with pytest.raises(MeshyBadRequest) as caught:
        await client.create_refine(preview_id)
    assert caught.value.status == 400
    assert "not SUCCEEDED" in caught.value.message
    assert caught.value.message in caught.value.user_message


async def test_rate_limit_honours_retry_after_and_retries(meshy: FakeMeshy, client: MeshyClient) -> None:
    task_id = await client.create_preview("rate limited")
    meshy.rate_limit_next(2, retry_after=0.05)
    started = asyncio.get_running_loop().time()
    await client.get_task(task_id)
    assert asyncio.get_running_loop().time() - started >= 0.1
    assert meshy.count("GET") == 3

    meshy.rate_limit_next(10, retry_after=0.01)
    with pytest.raises(MeshyRateLimited) as caught:
        await client.get_task(task_id)
    assert caught.value.retry_after == pytest.approx(0.01)
    assert meshy.count("GET") == 3 + 1 + FAST_RETRY.max_retries


async def test_rate_limited_creation_is_retried_without_duplicates(
    meshy: FakeMeshy, client: MeshyClient
) -> None:
    meshy.rate_limit_next(1, retry_after=0.01, method="POST")
    await client.create_preview("after a 429")
    assert len(meshy.create_requests) == 2
    assert len(meshy.tasks) == 1


async def test_request_rate_limit_of_the_account(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.config.requests_per_second = 5
    task_id = await client.create_preview("busy account")
    tasks = await asyncio.gather(*(client.get_task(task_id) for _ in range(8)))
    assert {task.id for task in tasks} == {task_id}
    assert meshy.count("GET") > 8  # some were answered 429 and resent after Retry-After


@pytest.mark.parametrize("reason", ["NoMoreConcurrentTasks", "NoMorePendingTasks"])
async def test_queue_full_is_not_a_rate_limit(meshy: FakeMeshy, client: MeshyClient, reason: str) -> None:
    meshy.queue_full_next(reason=reason)
    with pytest.raises(MeshyQueueFull) as caught:
        await client.create_preview("queued")
    assert caught.value.reason == reason
    assert "queue" in caught.value.user_message
    assert len(meshy.create_requests) == 1  # the scheduler decides when to try again


async def test_concurrent_task_limit_frees_up(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.config.max_concurrent_tasks = 1
    first = await client.create_preview("first slot")
    with pytest.raises(MeshyQueueFull):
        await client.create_preview("second slot")
    await _follow(client, first)
    assert await client.create_preview("second slot, later")


async def test_server_errors_are_retried_then_surface(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.inject_error(500, count=2, method="GET")
    assert await client.balance() == 10_000
    assert meshy.count("GET") == 3

    meshy.inject_error(502, count=10)
    with pytest.raises(MeshyServerError) as caught:
        await client.balance()
    assert caught.value.status == 502 and "server trouble" in caught.value.user_message
    assert meshy.count("GET") == 3 + 1 + FAST_RETRY.max_retries


async def test_creation_retries_only_when_no_task_can_exist(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.inject_error(500, method="POST")  # Meshy's own JSON error: nothing was created
    await client.create_preview("retried")
    assert len(meshy.create_requests) == 2

    meshy.inject_error(502, method="POST", raw_body="<html><body>502 Bad Gateway</body></html>")
    with pytest.raises(MeshyServerError) as caught:
        await client.create_preview("not retried")
    assert "502 Bad Gateway" in str(caught.value)
    assert len(meshy.create_requests) == 3


async def test_timeouts(meshy: FakeMeshy) -> None:
    meshy.config.response_delay_s = 0.5
    retry = RetryPolicy(max_retries=1, backoff_initial=0.01)
    async with MeshyClient(meshy.api_key, base_url=meshy.base_url, timeout=0.1, retry=retry) as slow:
        with pytest.raises(MeshyTimeout) as caught:
            await slow.balance()
        assert "in time" in caught.value.user_message
        assert slow.request_counts["GET /openapi/v1/balance"] == 2
        with pytest.raises(MeshyTimeout):
            await slow.create_preview("may or may not exist")
        assert slow.request_counts[KIND_CREATE] == 1  # a timed-out create may have created a task


async def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with MeshyClient("msy_x", base_url=f"http://127.0.0.1:{port}", retry=FAST_RETRY) as offline:
        with pytest.raises(MeshyConnectionError) as caught:
            await offline.create_preview("nobody home")
    assert offline.request_counts[KIND_CREATE] == 1 + FAST_RETRY.max_retries
    assert "could not reach" in caught.value.user_message


# --------------------------------------------------------------------------------------------- drift


async def test_drifting_shapes_are_tolerated(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.config.drift = True
    meshy.config.pending_s = 10.0
    task_id = await client.create_preview("drifting")
    pending = await client.get_task(task_id)
    assert pending.status is MeshyStatus.PENDING
    assert pending.raw["model_urls"] == {"glb": ""} and pending.model_urls == {}
    assert pending.raw["task_error"] is None and pending.error_message == ""
    assert pending.texture_urls == [] and pending.thumbnail_url is None

    meshy.advance(10.0)
    done, _ = await _follow(client, task_id)
    assert done.succeeded and "glb" in done.model_urls
    assert "unknown_future_field" in done.raw


def test_task_parsing_tolerates_nulls_and_junk() -> None:
    task = MeshyTask.from_json(
        {
            "id": "t1",
            "status": "in_progress",
            "progress": "42",
            "preceding_tasks": None,
            "model_urls": None,
            "texture_urls": [{"base_color": ""}, None, {"normal": "https://x/n.png"}],
            "task_error": None,
            "created_at": None,
            "seed": 3.0,
            "thumbnail_url": "",
            "extra": [1, 2],
        }
    )
    assert task.status is MeshyStatus.IN_PROGRESS and task.progress == 42
    assert task.model_urls == {} and task.texture_urls == [{"normal": "https://x/n.png"}]
    assert task.thumbnail_url is None and task.created_at == 0 and task.seed == 3
    assert MeshyTask.from_json({"id": "t2", "status": "EXPIRED_SOMEHOW"}).status is MeshyStatus.IN_PROGRESS
    assert MeshyTask.from_json({"id": "t3", "status": "CANCELLED"}).is_terminal
    assert MeshyTask.from_json({"id": "t4", "status": "FAILED", "task_error": "boom"}).error_message == "boom"


def test_sse_parser_handles_split_chunks_comments_and_crlf() -> None:
    parser = SseParser()
    stream = (
        b": keep-alive comment\r\n\r\n"
        b'event: message\r\ndata: {"id": "a",\r\ndata:  "status": "PENDING"}\r\n\r\n'
        b'data: {"id": "a", "status": "SUCCEEDED"}'
    )
    events = []
    for index in range(0, len(stream), 7):
        events += parser.feed(stream[index : index + 7])
    events += parser.close()
    assert [event.event for event in events] == ["message", "message"]
    assert events[0].data == '{"id": "a",\n "status": "PENDING"}'
    assert events[1].data.endswith('"SUCCEEDED"}')


# --------------------------------------------------------------------------------------------- assets


async def test_downloads_match_the_served_files_and_load(meshy: FakeMeshy, client: MeshyClient) -> None:
    preview_id = await client.create_preview("a downloadable thing", target_formats=["glb", "obj", "stl"])
    preview, _ = await _follow(client, preview_id)
    assert set(preview.model_urls) == {"glb", "obj", "mtl", "stl"}

    glb = await client.download(preview.model_urls["glb"], max_bytes=1_000_000)
    assert glb == meshy.asset_bytes(preview_id, "model.glb")
    scene = trimesh.load(io.BytesIO(glb), file_type="glb")
    assert isinstance(scene, trimesh.Scene)
    assert sum(len(mesh.faces) for mesh in scene.geometry.values()) > 0

    obj = await client.download(preview.model_urls["obj"], max_bytes=1_000_000)
    assert b"mtllib model.mtl" in obj
    loaded = trimesh.load(io.BytesIO(obj), file_type="obj")
    assert isinstance(loaded, trimesh.Trimesh) and len(loaded.faces) > 0
    assert b"newmtl" in await client.download(preview.model_urls["mtl"], max_bytes=100_000)

    assert preview.thumbnail_url is not None
    thumbnail = await client.download(preview.thumbnail_url, max_bytes=1_000_000)
    assert Image.open(io.BytesIO(thumbnail)).format == "PNG"


async def test_download_to_file_and_size_limit(meshy: FakeMeshy, client: MeshyClient, tmp_path: Path) -> None:
    refine_id = await client.create_refine((await _follow(client, await client.create_preview("box")))[0].id)
    refined, _ = await _follow(client, refine_id)
    target = tmp_path / "model.fbx"
    written = await client.download_to_file(refined.model_urls["fbx"], target, max_bytes=1_000_000)
    saved = await asyncio.to_thread(target.read_bytes)
    assert saved == meshy.asset_bytes(refine_id, "model.fbx") and written == len(saved)
    assert saved.startswith(b"Kaydara FBX Binary")

    with pytest.raises(MeshyDownloadTooLarge):
        await client.download(refined.model_urls["glb"], max_bytes=100)
    with pytest.raises(MeshyDownloadTooLarge):
        await client.download_to_file(refined.model_urls["glb"], tmp_path / "big.glb", max_bytes=100)
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("big.glb*")))


async def test_expired_asset_links(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.config.asset_ttl_s = -60
    task, _ = await _follow(client, await client.create_preview("expired"))
    with pytest.raises(MeshyAssetUnavailable) as caught:
        await client.download(task.model_urls["glb"], max_bytes=1_000_000)
    assert caught.value.status == 403
    assert "Signature" not in str(caught.value)  # signed query strings stay out of logs
