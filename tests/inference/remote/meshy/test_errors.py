"""How the real Meshy client maps HTTP errors from the local Meshy double to its exceptions: bad keys,
credits, bad requests, rate limits, full queues, server errors, timeouts and refused connections, and
which requests it retries."""

from __future__ import annotations

import asyncio
import socket

import pytest

from inference.remote.meshy import (
    KIND_CREATE,
    MeshyAuthError,
    MeshyBadRequest,
    MeshyClient,
    MeshyConnectionError,
    MeshyForbidden,
    MeshyNoCredits,
    MeshyQueueFull,
    MeshyRateLimited,
    MeshyServerError,
    MeshyTaskNotFound,
    MeshyTimeout,
    RetryPolicy,
)
from tests.fakes.meshy_api.server import FakeMeshy
from tests.inference.remote.meshy.parts import FAST_RETRY, _follow


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
