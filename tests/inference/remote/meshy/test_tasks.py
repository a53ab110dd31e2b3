"""The real Meshy client over real HTTP against the local Meshy double: creating and following tasks over
the stream, the test-mode key, listing, deleting and the balance."""

from __future__ import annotations

import asyncio

import pytest

from inference.remote.meshy import (
    KIND_CREATE,
    KIND_GET,
    KIND_STREAM,
    MESHY_TEST_MODE_KEY,
    MeshyClient,
    MeshyStatus,
    MeshyTask,
    MeshyTaskNotFound,
)
from tests.fakes.meshy_api.server import FakeMeshy
from tests.fakes.meshy_api.tasks import SAMPLE_PREVIEW_ID
from tests.inference.remote.meshy.parts import FAST_RETRY, _follow


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
