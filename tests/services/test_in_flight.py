"""`InFlight`: shutdown waits for the work in flight, work that starts meanwhile included, then stops the rest
with one log line, and the stopped work still runs its own cleanup."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bot.services.in_flight import InFlight


async def test_finish_waits_for_work_in_flight_and_for_work_started_meanwhile() -> None:
    work = InFlight("photo comment")
    done: list[str] = []

    async def comment(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        done.append(name)
        if name == "first":
            # Started while shutdown already waits: it is waited for as well.
            work.start(comment("late", 0.05), name="late")

    work.start(comment("first", 0.05), name="first")
    assert len(work) == 1
    assert await work.finish(5.0) == 0
    assert done == ["first", "late"] and len(work) == 0


async def test_what_outlives_the_deadline_is_stopped_and_cleans_up(caplog: pytest.LogCaptureFixture) -> None:
    work = InFlight("photo comment")
    released = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            released.set()  # e.g. the channel's cooldown is given back

    work.start(stuck(), name="stuck")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="bot.services.in_flight"):
        assert await work.finish(0.1) == 1
    assert time.monotonic() - started < 5
    assert released.is_set() and len(work) == 0
    assert "1 photo comment(s) still running after 0.1 s were stopped" in caplog.text
    assert "SHUTDOWN_DRAIN_S" in caplog.text


async def test_a_tracked_handler_is_waited_for_and_leaves_when_it_ends() -> None:
    work = InFlight("photo comment")
    inside = asyncio.Event()
    leave = asyncio.Event()

    async def slash_command() -> str:
        async with work.track():
            inside.set()
            await leave.wait()
        return "answered"

    handler = asyncio.create_task(slash_command())
    await inside.wait()
    assert len(work) == 1
    assert await work.wait(0.05) is False  # still answering
    leave.set()
    assert await work.wait(5.0) is True
    assert await handler == "answered" and len(work) == 0


async def test_waiting_from_inside_tracked_work_does_not_wait_for_itself() -> None:
    work = InFlight("photo comment")

    async def handler() -> bool:
        async with work.track():
            return await work.wait(5.0)

    assert await asyncio.wait_for(handler(), 2.0) is True
