"""Lumi's models on Ray Serve, reached by gateways over OIP: one local Ray cluster for the module.

The moderation family only (NudeNet and open_nsfw ship in their packages), one replica. The test that
stops the service runs last.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.services.moderation import ImageChecker
from bot.services.moderation.check_results import CheckStatus
from inference.moderation import register_moderation_models
from inference.registry import ModelRegistry
from inference.serving.client import InferenceClient
from inference.serving.remote import RemoteModels
from tests.serving.parts import assert_same_moderation, http_get

# One Ray cluster start (20-55 s on 2 busy cores) falls into the first test's time.
pytestmark = [pytest.mark.ray, pytest.mark.e2e, pytest.mark.timeout(300)]

_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def ray_service() -> Iterator[str]:
    """The moderation deployment on a local 2-CPU Ray cluster, behind Serve's HTTP proxy; its URL."""
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    ray = pytest.importorskip("ray", reason="Ray Serve is not installed (the serve extra)")
    from ray import serve

    from inference.serving.app import FamilyResources, build_app
    from inference.serving.models import ServeOptions

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200_000_000, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        # A wide window and room for both clients' bursts in one batch: the sharing test looks for it.
        options = ServeOptions(device="cpu", intra_op_threads=1, max_batch_size=32, batch_wait_ms=250.0)
        app = build_app(
            options, families=["moderation"], resources={"moderation": FamilyResources(1, 1.0, 0.0)}
        )
        serve.run(app, name="lumi", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


@pytest.fixture
async def remote_registry(ray_service: str) -> AsyncIterator[tuple[ModelRegistry, InferenceClient]]:
    client = InferenceClient(ray_service, timeout_s=60.0, retry_deadline_s=1.0, breaker_failures=2)
    registry = ModelRegistry("cpu", remote=RemoteModels(client))
    register_moderation_models(registry)
    yield registry, client
    await registry.close()


async def test_health_and_model_readiness_follow_the_protocol(ray_service: str) -> None:
    assert (await asyncio.to_thread(http_get, f"{ray_service}/v2/health/live"))[0] == 200
    assert (await asyncio.to_thread(http_get, f"{ray_service}/v2/health/ready"))[0] == 200
    status, _ = await asyncio.to_thread(http_get, f"{ray_service}/v2/models/nudenet/ready")
    assert status == 200  # loads it now
    status, body = await asyncio.to_thread(http_get, f"{ray_service}/v2/models/objects/ready")
    assert status == 404 and "not served here" in json.loads(body)["error"]


async def test_remote_runners_give_the_in_process_scores(
    remote_registry: tuple[ModelRegistry, InferenceClient], moderation_photos: dict[str, bytes]
) -> None:
    remote, _client = remote_registry
    local = ModelRegistry("cpu")
    register_moderation_models(local, intra_op_threads=1)
    try:
        await assert_same_moderation(local, remote, moderation_photos)
    finally:
        await local.close()


async def test_concurrent_requests_from_two_processes_share_batches(
    ray_service: str, moderation_photos: dict[str, bytes]
) -> None:
    _, before = await asyncio.to_thread(http_get, f"{ray_service}/v2/debug/batches")
    seen = len(json.loads(before).get("open_nsfw", []))
    start = time.time() + 8.0  # both processes import and prepare first, then fire together
    env = {**os.environ, "PYTHONPATH": str(_ROOT)}
    command = [sys.executable, "-m", "tests.serving.burst_client", ray_service, str(start), "16"]
    processes = [
        await asyncio.create_subprocess_exec(*command, cwd=_ROOT, env=env, stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [await process.communicate() for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    scores = [json.loads(stdout) for stdout, _ in outputs]
    assert scores[0] == scores[1] and len(scores[0]) == 16  # same photos, same answers
    _, after = await asyncio.to_thread(http_get, f"{ray_service}/v2/debug/batches")
    batches = json.loads(after)["open_nsfw"][seen:]
    assert sum(batches) == 32
    assert len(batches) < 32  # requests were batched...
    assert max(batches) > 16  # ...and one batch held requests of both processes


async def test_a_service_stopped_mid_stream_gives_clear_outcomes_and_opens_the_circuit(
    ray_service: str,
    remote_registry: tuple[ModelRegistry, InferenceClient],
    moderation_photos: dict[str, bytes],
) -> None:
    from ray import serve

    remote, client = remote_registry
    checker = ImageChecker(remote, model_threads=1)
    photo = next(iter(moderation_photos.values()))
    first = await checker.check_image(photo)
    assert first.status is CheckStatus.CHECKED
    stream = asyncio.gather(*(checker.check_image(photo) for _ in range(12)))
    await asyncio.to_thread(serve.shutdown)
    verdicts = list(await asyncio.wait_for(stream, timeout=120))
    verdicts += [await checker.check_image(photo) for _ in range(4)]
    assert {verdict.status for verdict in verdicts} <= {CheckStatus.CHECKED, CheckStatus.ERROR}
    failed = [verdict for verdict in verdicts if verdict.status is CheckStatus.ERROR]
    assert failed, "every image was checked although the service had stopped"
    assert all("inference service" in (verdict.problem or "") for verdict in failed)
    assert all(not verdict.flagged for verdict in failed)
    assert "opened" in {await client.breaker_state(model) for model in ("nudenet", "open_nsfw")}
    assert "failed repeatedly" in (verdicts[-1].problem or "")
