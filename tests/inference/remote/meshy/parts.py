"""Parts the Meshy client tests share: the local Meshy double, a client with fast retries, and following
a task to its end."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from inference.remote.meshy import MeshyClient, MeshyTask, RetryPolicy
from tests.fakes.meshy_api.server import FakeMeshy, FakeMeshyConfig

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
