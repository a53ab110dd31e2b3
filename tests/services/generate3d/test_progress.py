"""The generation progress display: the progress text and the throttle on message edits."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta

from bot.services.generate3d.progress import (
    EditThrottle,
    JobSnapshot,
    overall_percent,
    progress_text,
    stage_line,
)
from storage.models import JobState


def test_progress_text_shows_bar_stage_and_elapsed() -> None:
    created = datetime(2024, 1, 1, tzinfo=UTC)
    snapshot = JobSnapshot(
        job_id="j", state=JobState.PREVIEW, progress=40, stage_progress=70, created_at=created
    )
    text = progress_text(snapshot, now=created + timedelta(seconds=75))
    bar, stage, elapsed = text.splitlines()
    assert bar == "▰" * 8 + "▱" * 12 + " 40%"
    assert stage == "Generating the shape · 70%"
    assert elapsed == "Elapsed: 1 min 15 s"
    queued = JobSnapshot(job_id="j", state=JobState.QUEUED, detail="position 3 in Lumi's queue")
    assert stage_line(queued) == "Queued · position 3 in Lumi's queue"
    assert overall_percent(JobState.REFINING, 50, textured=True) == 72
    assert overall_percent(JobState.PREVIEW, 100, textured=False) == 90


async def test_throttle_sends_at_most_one_edit_per_interval_and_always_the_last() -> None:
    sent: list[tuple[float, int]] = []

    async def send(key: str, value: int) -> None:
        sent.append((time.monotonic(), value))

    throttle: EditThrottle[int] = EditThrottle(send, interval_s=0.3)
    for value in range(10):
        throttle.submit("message", value)
        await asyncio.sleep(0.05)
    await throttle.wait_idle("message")
    values = [value for _, value in sent]
    assert values[0] == 0 and values[-1] == 9  # the first at once, the newest at the end
    assert len(values) <= 3
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(sent)]
    assert all(gap >= 0.29 for gap in gaps), gaps
    await throttle.close()


async def test_throttle_keys_are_independent_and_failures_do_not_stop_it() -> None:
    sent: list[tuple[str, int]] = []

    async def send(key: str, value: int) -> None:
        if value == 1:
            raise RuntimeError("Discord said no")
        sent.append((key, value))

    throttle: EditThrottle[int] = EditThrottle(send, interval_s=0.05)
    throttle.submit("a", 1)
    throttle.submit("b", 5)
    await throttle.wait_idle("a")
    throttle.submit("a", 2)
    await throttle.wait_idle("a")
    await throttle.wait_idle("b")
    assert sent == [("b", 5), ("a", 2)]
    await throttle.close()
