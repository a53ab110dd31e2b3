"""The local doubles speak the documented protocols, checked with plain HTTP (and the openai SDK).

Other tests trust these servers to behave like Meshy and OpenAI; these pin down that behaviour
without going through Lumi's own clients.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
import trimesh
from PIL import Image

from tests.fakes.meshes import preview_assets, refine_assets
from tests.fakes.meshy_api.server import FakeMeshy, FakeMeshyConfig
from tests.fakes.meshy_api.tasks import SAMPLE_PREVIEW_ID, TEST_MODE_KEY
from tests.fakes.openai_server import FakeOpenAI

TASKS = "/openapi/v2/text-to-3d"


@pytest.fixture
async def meshy() -> AsyncIterator[FakeMeshy]:
    config = FakeMeshyConfig(pending_s=0.1, preview_s=0.2, refine_s=0.2, keepalive_s=0.03)
    async with FakeMeshy(config=config) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _call(
    http: aiohttp.ClientSession,
    meshy: FakeMeshy,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = None,
) -> tuple[int, Any]:
    async with http.request(
        method, meshy.base_url + path, json=body, headers=_auth(key or meshy.api_key)
    ) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None)


async def _sse(http: aiohttp.ClientSession, meshy: FakeMeshy, task_id: str) -> list[tuple[str, Any]]:
    async with http.get(
        f"{meshy.base_url}{TASKS}/{task_id}/stream",
        headers={**_auth(meshy.api_key), "Accept": "text/event-stream"},
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = (await response.read()).decode()
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def _wait_succeeded(http: aiohttp.ClientSession, meshy: FakeMeshy, task_id: str) -> dict[str, Any]:
    for _ in range(200):
        _, task = await _call(http, meshy, "GET", f"{TASKS}/{task_id}")
        if task["status"] == "SUCCEEDED":
            return dict(task)
        await asyncio.sleep(0.02)
    raise AssertionError("task never finished")


# ------------------------------------------------------------------------------------------- Meshy


async def test_auth(meshy: FakeMeshy, http: aiohttp.ClientSession) -> None:
    assert (await _call(http, meshy, "GET", "/openapi/v1/balance", key="msy_bad"))[0] == 401
    async with http.get(meshy.base_url + "/openapi/v1/balance") as response:
        assert response.status == 401
        assert (await response.json())["message"]
    status, body = await _call(http, meshy, "GET", "/openapi/v1/balance")
    assert status == 200 and body == {"balance": 10_000}


async def test_test_mode_key_always_returns_the_sample(meshy: FakeMeshy, http: aiohttp.ClientSession) -> None:
    status, body = await _call(
        http, meshy, "POST", TASKS, {"mode": "preview", "prompt": "anything"}, key=TEST_MODE_KEY
    )
    assert status == 202 and body == {"result": SAMPLE_PREVIEW_ID}
    status, task = await _call(http, meshy, "GET", f"{TASKS}/{SAMPLE_PREVIEW_ID}", key=TEST_MODE_KEY)
    assert task["status"] == "SUCCEEDED" and task["model_urls"]["glb"]
    status, task = await _call(http, meshy, "GET", f"{TASKS}/whatever-id", key=TEST_MODE_KEY)
    assert task["id"] == SAMPLE_PREVIEW_ID
    # The sample belongs to test mode only.
    assert (await _call(http, meshy, "GET", f"{TASKS}/{SAMPLE_PREVIEW_ID}"))[0] == 404


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"mode": "preview", "prompt": "x" * 601}, "600"),
        ({"mode": "preview"}, "prompt"),
        ({"mode": "preview", "prompt": "ok", "target_polycount": 99}, "target_polycount"),
        ({"mode": "preview", "prompt": "ok", "topology": "hex"}, "topology"),
        ({"mode": "preview", "prompt": "ok", "target_formats": ["blend"]}, "target_formats"),
        ({"mode": "sculpt", "prompt": "ok"}, "mode"),
        ({"mode": "refine"}, "preview_task_id"),
    ],
)
async def test_create_validation(
    meshy: FakeMeshy, http: aiohttp.ClientSession, body: dict[str, Any], fragment: str
) -> None:
    status, answer = await _call(http, meshy, "POST", TASKS, body)
    assert status == 400 and fragment in answer["message"]
    assert not meshy.tasks


async def test_lifecycle_refine_and_preceding_tasks(meshy: FakeMeshy, http: aiohttp.ClientSession) -> None:
    meshy.config.pending_s = meshy.config.preview_s = meshy.config.refine_s = 10.0
    ids = []
    for n in range(3):
        status, body = await _call(http, meshy, "POST", TASKS, {"mode": "preview", "prompt": f"p{n}"})
        assert status == 202
        ids.append(body["result"])
    _, third = await _call(http, meshy, "GET", f"{TASKS}/{ids[2]}")
    assert third["status"] == "PENDING" and third["preceding_tasks"] == 2 and third["progress"] == 0
    assert third["model_urls"] == {} and third["task_error"] == {"message": ""}

    status, early = await _call(http, meshy, "POST", TASKS, {"mode": "refine", "preview_task_id": ids[0]})
    assert status == 400 and "SUCCEEDED" in early["message"]
    status, _ = await _call(http, meshy, "POST", TASKS, {"mode": "refine", "preview_task_id": "nope"})
    assert status == 404

    meshy.advance(12.0, ids[0])
    _, running = await _call(http, meshy, "GET", f"{TASKS}/{ids[0]}")
    assert running["status"] == "IN_PROGRESS" and 0 < running["progress"] < 100
    assert running["preceding_tasks"] == 0 and running["started_at"] > 0 == running["finished_at"]

    meshy.advance(10.0, ids[0])
    _, done = await _call(http, meshy, "GET", f"{TASKS}/{ids[0]}")
    assert done["status"] == "SUCCEEDED" and done["progress"] == 100
    assert set(done["model_urls"]) == {"glb", "fbx", "obj", "mtl", "usdz"}
    assert done["created_at"] < done["started_at"] < done["finished_at"]
    status, body = await _call(
        http, meshy, "POST", TASKS, {"mode": "refine", "preview_task_id": ids[0], "enable_pbr": False}
    )
    meshy.advance(30.0, body["result"])
    _, refined = await _call(http, meshy, "GET", f"{TASKS}/{body['result']}")
    assert refined["status"] == "SUCCEEDED" and refined["type"] == "text-to-3d-refine"
    assert list(refined["texture_urls"][0]) == ["base_color"]
    assert meshy.credits == 10_000 - 3 * meshy.config.preview_cost - meshy.config.refine_cost


async def test_list_and_delete(meshy: FakeMeshy, http: aiohttp.ClientSession) -> None:
    for n in range(3):
        await _call(http, meshy, "POST", TASKS, {"mode": "preview", "prompt": f"p{n}"})
    status, page = await _call(http, meshy, "GET", f"{TASKS}?page_num=1&page_size=2&sort_by=%2Bcreated_at")
    assert status == 200 and [t["prompt"] for t in page] == ["p0", "p1"]
    _, page = await _call(http, meshy, "GET", f"{TASKS}?page_num=1&page_size=2&sort_by=-created_at")
    assert [t["prompt"] for t in page] == ["p2", "p1"]
    assert (await _call(http, meshy, "GET", f"{TASKS}?page_size=51"))[0] == 400
    assert (await _call(http, meshy, "GET", f"{TASKS}?sort_by=name"))[0] == 400

    victim = page[0]["id"]
    async with http.delete(f"{meshy.base_url}{TASKS}/{victim}", headers=_auth(meshy.api_key)) as response:
        assert response.status == 200 and await response.read() == b""
    assert (await _call(http, meshy, "GET", f"{TASKS}/{victim}"))[0] == 404
    assert (await _call(http, meshy, "DELETE", f"{TASKS}/{victim}"))[0] == 404


async def test_stream_format_keepalives_and_terminal_end(
    meshy: FakeMeshy, http: aiohttp.ClientSession
) -> None:
    meshy.config.pending_s = 10.0
    _, body = await _call(http, meshy, "POST", TASKS, {"mode": "preview", "prompt": "streamed"})
    reading = asyncio.create_task(_sse(http, meshy, body["result"]))
    await asyncio.wait_for(meshy.stream_opened.wait(), timeout=5)
    await asyncio.sleep(0.15)  # several keep-alive periods while the task waits in the queue
    meshy.advance(10.1)
    events = await reading

    assert {name for name, _ in events} == {"message"}
    statuses = [data["status"] for _, data in events]
    assert statuses[0] == "PENDING" and statuses[-1] == "SUCCEEDED"
    assert statuses.count("SUCCEEDED") == 1  # the stream ends after the terminal event
    running = [data for _, data in events if data["status"] != "SUCCEEDED"]
    assert all(set(data) <= {"id", "progress", "status", "preceding_tasks"} for data in running)
    pending = [json.dumps(data) for data in running if data["status"] == "PENDING"]
    assert len(pending) > len(set(pending))  # unchanged task re-sent as a keep-alive
    assert "model_urls" in events[-1][1]


async def test_stream_error_event_after_200(meshy: FakeMeshy, http: aiohttp.ClientSession) -> None:
    events = await _sse(http, meshy, "unknown-task")
    assert events == [("error", {"status_code": 404, "message": "Task not found"})]


async def test_stream_breaks_on_request(meshy: FakeMeshy, http: aiohttp.ClientSession) -> None:
    meshy.break_streams(after_events=1, mode="reset")
    _, body = await _call(http, meshy, "POST", TASKS, {"mode": "preview", "prompt": "cut"})
    with pytest.raises(aiohttp.ClientPayloadError):
        await _sse(http, meshy, body["result"])


async def test_injected_errors_and_queue_limits(meshy: FakeMeshy, http: aiohttp.ClientSession) -> None:
    meshy.inject_error(503, count=1, path_contains="/balance")
    assert (await _call(http, meshy, "GET", "/openapi/v1/balance"))[0] == 503
    assert (await _call(http, meshy, "GET", "/openapi/v1/balance"))[0] == 200

    meshy.rate_limit_next(retry_after=2)
    async with http.get(meshy.base_url + "/openapi/v1/balance", headers=_auth(meshy.api_key)) as response:
        assert response.status == 429 and response.headers["Retry-After"] == "2"
        assert "RateLimitExceeded" in (await response.json())["message"]

    meshy.config.max_concurrent_tasks = 1
    assert (await _call(http, meshy, "POST", TASKS, {"mode": "preview", "prompt": "a"}))[0] == 202
    status, body = await _call(http, meshy, "POST", TASKS, {"mode": "preview", "prompt": "b"})
    assert status == 429 and "NoMoreConcurrentTasks" in body["message"]

    meshy.config.max_concurrent_tasks = None
    meshy.credits = 0
    assert (await _call(http, meshy, "POST", TASKS, {"mode": "preview", "prompt": "c"}))[0] == 402
    assert meshy.count("POST") == 3 and len(meshy.create_requests) == 3


async def test_failed_task_refunds(meshy: FakeMeshy, http: aiohttp.ClientSession) -> None:
    meshy.fail_next_tasks(message="Internal server error.")
    _, body = await _call(http, meshy, "POST", TASKS, {"mode": "preview", "prompt": "doomed"})
    assert meshy.credits == 10_000 - meshy.config.preview_cost
    events = await _sse(http, meshy, body["result"])
    final = events[-1][1]
    assert final["status"] == "FAILED" and final["task_error"] == {"message": "Internal server error."}
    assert final["model_urls"] == {}
    assert (await _call(http, meshy, "GET", "/openapi/v1/balance"))[1] == {"balance": 10_000}


async def test_drift_shapes(meshy: FakeMeshy, http: aiohttp.ClientSession) -> None:
    meshy.config.drift = True
    meshy.config.pending_s = 10.0
    _, body = await _call(http, meshy, "POST", TASKS, {"mode": "preview", "prompt": "drift"})
    _, pending = await _call(http, meshy, "GET", f"{TASKS}/{body['result']}")
    assert pending["model_urls"] == {"glb": ""}
    assert pending["task_error"] is None and pending["texture_urls"] is None
    assert {"mode", "name", "expires_at"} <= pending.keys()


async def test_assets_are_signed_and_typed(meshy: FakeMeshy, http: aiohttp.ClientSession) -> None:
    _, body = await _call(http, meshy, "POST", TASKS, {"mode": "preview", "prompt": "files"})
    task = await _wait_succeeded(http, meshy, body["result"])
    async with http.get(task["model_urls"]["glb"]) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "model/gltf-binary"
        assert await response.read() == preview_assets().glb
    async with http.get(task["thumbnail_url"]) as response:
        assert response.headers["Content-Type"] == "image/png"
    unsigned = task["model_urls"]["glb"].split("?")[0]
    async with http.get(unsigned) as response:
        assert response.status == 403
    tampered = task["model_urls"]["glb"].replace("Expires=", "Expires=9")
    async with http.get(tampered) as response:
        assert response.status == 403


async def test_image_to_3d(meshy: FakeMeshy, http: aiohttp.ClientSession) -> None:
    path = "/openapi/v1/image-to-3d"
    assert (await _call(http, meshy, "POST", path, {"image_url": "ftp://x"}))[0] == 400
    status, body = await _call(
        http, meshy, "POST", path, {"image_url": "data:image/png;base64,AAAA", "should_texture": True}
    )
    assert status == 202
    _, task = await _call(http, meshy, "GET", f"{path}/{body['result']}")
    assert task["type"] == "image-to-3d"
    assert (await _call(http, meshy, "GET", f"{TASKS}/{body['result']}"))[0] == 404


def test_built_meshes_are_real_files() -> None:
    for assets in (preview_assets(), refine_assets()):
        scene = trimesh.load(io.BytesIO(assets.glb), file_type="glb")
        assert isinstance(scene, trimesh.Scene) and scene.geometry
        mesh = trimesh.load(io.BytesIO(assets.obj), file_type="obj")
        assert isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) >= 12
        assert b"newmtl" in assets.mtl
        assert Image.open(io.BytesIO(assets.thumbnail_png)).size == (128, 128)
        assert assets.files["model.fbx"].startswith(b"Kaydara FBX Binary  \x00")
        with zipfile.ZipFile(io.BytesIO(assets.files["model.usdz"])) as usdz:
            assert usdz.infolist()[0].compress_type == zipfile.ZIP_STORED
    assert b"map_Kd texture_base_color.png" in refine_assets().mtl
    assert preview_assets().glb == preview_assets().glb  # built once, stable bytes


# ------------------------------------------------------------------------------------------ OpenAI


async def test_openai_double_with_the_sdk() -> None:
    async with FakeOpenAI(reply="one two three") as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0)
        try:
            models = await client.models.list()
            assert fake.model in [model.id for model in models.data]

            stream = await client.chat.completions.create(
                model=fake.model, messages=[{"role": "user", "content": "count"}], stream=True
            )
            pieces = [chunk.choices[0].delta.content or "" async for chunk in stream]
            assert "".join(pieces) == "one two three"

            fake.moderation_scores = lambda item: {"harassment": 0.7} if "mean" in str(item) else {}
            result = await client.moderations.create(input=["a mean text", "a kind text"])
            assert [r.flagged for r in result.results] == [True, False]
            assert result.results[0].categories.harassment is True

            async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="bad", max_retries=0) as bad:
                with pytest.raises(openai.AuthenticationError):
                    await bad.models.list()
        finally:
            await client.close()
    assert [request.path for request in fake.requests][:3] == [
        "/v1/models",
        "/v1/chat/completions",
        "/v1/moderations",
    ]
