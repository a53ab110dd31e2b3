from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest
from prometheus_client import REGISTRY

from inference.batcher import BatcherClosed, BatchSizeMismatch, DynamicBatcher, QueueFull


class Recorder:
    """A real predict function that records every batch and the thread it ran on."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[int] = set()
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, items: list[int]) -> list[int]:
        self.gate.wait(5)
        self.threads.add(threading.get_ident())
        self.batches.append(list(items))
        if self.delay:
            time.sleep(self.delay)
        return [item * 10 for item in items]


async def test_concurrent_submissions_in_the_wait_window_share_a_batch() -> None:
    recorder = Recorder()
    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        "t-window", recorder, max_batch_size=16, max_wait_ms=50
    )
    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert recorder.batches == [[0, 1, 2, 3, 4]]
    assert threading.get_ident() not in recorder.threads
    await batcher.close()


async def test_batches_never_exceed_max_batch_size() -> None:
    recorder = Recorder(delay=0.01)
    batcher: DynamicBatcher[int, int] = DynamicBatcher("t-size", recorder, max_batch_size=4, max_wait_ms=20)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(19)))
    assert results == [i * 10 for i in range(19)]
    assert all(1 <= len(batch) <= 4 for batch in recorder.batches)
    assert sorted(item for batch in recorder.batches for item in batch) == list(range(19))
    assert len(recorder.batches) == 5
    # One worker thread per batcher, whatever the load.
    assert len(recorder.threads) == 1
    await batcher.close()


async def test_the_window_closes_a_lone_request_after_max_wait() -> None:
    recorder = Recorder()
    batcher: DynamicBatcher[int, int] = DynamicBatcher("t-lone", recorder, max_batch_size=8, max_wait_ms=30)
    started = time.perf_counter()
    assert await batcher.submit(7) == 70
    elapsed = time.perf_counter() - started
    assert 0.025 <= elapsed < 0.5
    late = list(await asyncio.gather(batcher.submit(1), batcher.submit(2)))
    assert late == [10, 20]
    assert recorder.batches == [[7], [1, 2]]
    await batcher.close()


async def test_a_full_batch_does_not_wait_for_the_window() -> None:
    recorder = Recorder()
    batcher: DynamicBatcher[int, int] = DynamicBatcher("t-full", recorder, max_batch_size=3, max_wait_ms=5000)
    started = time.perf_counter()
    assert await asyncio.gather(*(batcher.submit(i) for i in range(3))) == [0, 10, 20]
    assert time.perf_counter() - started < 1.0
    await batcher.close()


async def test_an_error_every_item_hits_reaches_every_caller() -> None:
    def explode(items: list[int]) -> list[int]:
        raise ValueError(f"model broke on {len(items)} items")

    batcher: DynamicBatcher[int, int] = DynamicBatcher("t-error", explode, max_batch_size=8, max_wait_ms=20)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert all(isinstance(outcome, ValueError) for outcome in outcomes)
    # The batch of four failed, then each item failed again on its own.
    assert {str(outcome) for outcome in outcomes} == {"model broke on 1 items"}
    failed = REGISTRY.get_sample_value("lumi_inference_failed_batches_total", {"model": "t-error"})
    assert failed == 5.0
    await batcher.close()


async def test_one_bad_item_gets_the_error_and_the_others_their_results() -> None:
    calls: list[list[int]] = []

    def picky(items: list[int]) -> list[int]:
        calls.append(list(items))
        if 3 in items:
            raise ValueError("the model cannot take 3")
        return [item * 10 for item in items]

    batcher: DynamicBatcher[int, int] = DynamicBatcher("t-one-bad", picky, max_batch_size=8, max_wait_ms=20)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(5)), return_exceptions=True)
    assert outcomes[:3] == [0, 10, 20] and outcomes[4] == 40
    assert isinstance(outcomes[3], ValueError) and str(outcomes[3]) == "the model cannot take 3"
    assert calls == [[0, 1, 2, 3, 4], [0], [1], [2], [3], [4]]
    # The batcher is still healthy: the next batch runs whole again.
    assert await asyncio.gather(batcher.submit(5), batcher.submit(6)) == [50, 60]
    assert calls[-1] == [5, 6]
    await batcher.close()


async def test_a_caller_cancelled_while_its_batch_is_split_is_not_run_again() -> None:
    gate = threading.Event()
    calls: list[list[int]] = []

    def picky(items: list[int]) -> list[int]:
        calls.append(list(items))
        if len(items) > 1:
            gate.wait(5)
            raise ValueError("batch broke")
        return items

    batcher: DynamicBatcher[int, int] = DynamicBatcher("t-split-cancel", picky, max_wait_ms=1)
    first, second = asyncio.create_task(batcher.submit(1)), asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0.05)  # the batch of two is blocked inside the model
    first.cancel()
    gate.set()
    assert await second == 2
    assert calls == [[1, 2], [2]]
    await batcher.close()


async def test_a_failed_batch_does_not_poison_the_next() -> None:
    calls = 0

    def flaky(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first batch fails")
        return items

    batcher: DynamicBatcher[int, int] = DynamicBatcher("t-flaky", flaky, max_wait_ms=5)
    with pytest.raises(RuntimeError):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2
    await batcher.close()


async def test_wrong_result_length_fails_the_whole_batch() -> None:
    def drops_one(items: list[int]) -> list[int]:
        return items[:-1]

    batcher: DynamicBatcher[int, int] = DynamicBatcher("t-length", drops_one, max_wait_ms=20)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(outcome, BatchSizeMismatch) for outcome in outcomes)
    assert "2 results for 3 items" in str(outcomes[0])
    await batcher.close()


async def test_cancelled_requests_are_dropped_before_the_batch_runs() -> None:
    recorder = Recorder()
    batcher: DynamicBatcher[int, int] = DynamicBatcher("t-cancel", recorder, max_batch_size=8, max_wait_ms=80)
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(6)]
    await asyncio.sleep(0.01)
    assert batcher.queue_depth == 6
    tasks[1].cancel()
    tasks[4].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError) and isinstance(done[4], asyncio.CancelledError)
    assert [done[i] for i in (0, 2, 3, 5)] == [0, 20, 30, 50]
    assert recorder.batches == [[0, 2, 3, 5]]
    await batcher.close()


async def test_a_caller_cancelled_while_its_batch_runs_does_not_break_the_others() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher: DynamicBatcher[int, int] = DynamicBatcher("t-cancel-running", recorder, max_wait_ms=1)
    first, second = asyncio.create_task(batcher.submit(1)), asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0.05)  # the batch is now blocked inside the model
    first.cancel()
    recorder.gate.set()
    assert await second == 20
    with pytest.raises(asyncio.CancelledError):
        await first
    await batcher.close()


async def test_a_full_queue_applies_back_pressure_then_times_out() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        "t-pressure", recorder, max_batch_size=2, max_wait_ms=1, max_queue=3
    )
    running = [asyncio.create_task(batcher.submit(i)) for i in range(2)]
    await asyncio.sleep(0.05)  # first batch taken by the worker and blocked in the model
    queued = [asyncio.create_task(batcher.submit(i)) for i in range(2, 5)]
    await asyncio.sleep(0.01)
    assert batcher.queue_depth == 3
    waiting = asyncio.create_task(batcher.submit(5))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # held back, not dropped
    with pytest.raises(QueueFull, match="overloaded"):
        await batcher.submit(6, queue_timeout=0.05)
    recorder.gate.set()
    results = await asyncio.gather(*running, *queued, waiting)
    assert results == [0, 10, 20, 30, 40, 50]
    await batcher.close()


async def test_close_drains_pending_work_by_default() -> None:
    recorder = Recorder(delay=0.01)
    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        "t-drain", recorder, max_batch_size=2, max_wait_ms=1000
    )
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(5)]
    await asyncio.sleep(0)
    started = time.perf_counter()
    await batcher.close()
    assert time.perf_counter() - started < 0.5  # closing skips the wait window
    assert [task.result() for task in tasks] == [0, 10, 20, 30, 40]
    with pytest.raises(BatcherClosed):
        await batcher.submit(9)


async def test_close_without_drain_fails_pending_callers() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher: DynamicBatcher[int, int] = DynamicBatcher("t-nodrain", recorder, max_batch_size=1, max_wait_ms=1)
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(3)]
    await asyncio.sleep(0.05)
    closing = asyncio.create_task(batcher.close(drain=False))
    await asyncio.sleep(0.01)
    recorder.gate.set()
    await closing
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert outcomes[0] == 0  # already running when close() came
    assert all(isinstance(outcome, BatcherClosed) for outcome in outcomes[1:])


async def test_the_event_loop_stays_responsive_during_slow_batches() -> None:
    def slow(items: Sequence[int]) -> list[int]:
        time.sleep(0.2)
        return list(items)

    batcher: DynamicBatcher[int, int] = DynamicBatcher("t-loop", slow, max_wait_ms=1)
    job = asyncio.create_task(batcher.submit(1))
    started = time.perf_counter()
    await asyncio.sleep(0.01)
    assert time.perf_counter() - started < 0.1
    assert await job == 1
    await batcher.close()


async def test_metrics_are_exported_per_model() -> None:
    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        "t-metrics", Recorder(), max_batch_size=4, max_wait_ms=20
    )
    await asyncio.gather(*(batcher.submit(i) for i in range(6)))
    labels = {"model": "t-metrics"}
    assert REGISTRY.get_sample_value("lumi_inference_batch_size_count", labels) == 2
    assert REGISTRY.get_sample_value("lumi_inference_batch_size_sum", labels) == 6
    assert REGISTRY.get_sample_value("lumi_inference_request_seconds_count", labels) == 6
    assert REGISTRY.get_sample_value("lumi_inference_batch_seconds_count", labels) == 2
    assert REGISTRY.get_sample_value("lumi_inference_queue_depth", labels) == 0
    await batcher.close()


async def test_callers_hear_about_a_worker_cancelled_mid_batch() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher: DynamicBatcher[int, int] = DynamicBatcher("t-worker-cancel", recorder, max_wait_ms=1)
    running = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0.05)
    queued = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    worker = batcher._worker
    assert worker is not None
    worker.cancel()  # what happens to the task when its event loop shuts down
    outcomes = await asyncio.gather(running, queued, return_exceptions=True)
    recorder.gate.set()
    assert all(isinstance(outcome, BatcherClosed) for outcome in outcomes)
    await batcher.close()
