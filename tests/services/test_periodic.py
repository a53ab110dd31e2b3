"""`PeriodicTask`: runs at start and then on its interval, survives a failed round, stops at once."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bot.services.periodic import PeriodicTask


class CountingTask(PeriodicTask):
    """Fails its first `failures` rounds; `rounds` is set once `target` rounds have ended."""

    def __init__(self, *, interval_s: float, failures: int = 0, target: int = 1) -> None:
        super().__init__(interval_s=interval_s, name="lumi-test-periodic", description="test clean-up")
        self.failures = failures
        self.target = target
        self.calls = 0
        self.rounds = asyncio.Event()

    async def run_once(self) -> None:
        self.calls += 1
        if self.calls >= self.target:
            self.rounds.set()
        if self.calls <= self.failures:
            raise RuntimeError(f"round {self.calls} broke")


async def run_until_target(task: CountingTask) -> None:
    task.start()
    try:
        async with asyncio.timeout(5):
            await task.rounds.wait()
        assert task.running
    finally:
        await task.stop()
    assert not task.running


async def test_runs_at_start_and_again_after_each_interval() -> None:
    task = CountingTask(interval_s=0.01, target=3)
    await run_until_target(task)
    assert task.calls >= 3


async def test_a_failed_round_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    task = CountingTask(interval_s=0.01, failures=1, target=2)
    with caplog.at_level(logging.ERROR, logger="bot.services.periodic"):
        await run_until_target(task)
    (record,) = [r for r in caplog.records if r.name == "bot.services.periodic"]
    assert record.getMessage() == "test clean-up failed; retrying in 0 s"
    assert record.exc_info is not None and str(record.exc_info[1]) == "round 1 broke"


async def test_stop_cancels_a_long_wait_at_once_and_is_safe_to_repeat() -> None:
    task = CountingTask(interval_s=3600)
    await task.stop()  # never started
    task.start()
    task.start()  # already running: no second loop
    async with asyncio.timeout(5):
        await task.rounds.wait()
    started = time.monotonic()
    await task.stop()
    assert time.monotonic() - started < 1.0
    assert not task.running and task.calls == 1
    await task.stop()


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_s must be positive"):
        CountingTask(interval_s=0)
