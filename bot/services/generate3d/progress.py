"""What a 3D job looks like while it runs, and how often a message may be edited to show it.

``JobSnapshot`` is the live view of one job (shared by the Discord progress message, the web page's
event stream and the command line); the text helpers turn it into a bar and a stage line. ``EditThrottle``
keeps message edits to at most one per interval per message, always sending the newest snapshot and
never dropping the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Generic, TypeVar

from bot.services.generate3d.job_files import JobFiles
from storage.models import JobState, utcnow

log = logging.getLogger(__name__)

STAGE_LABELS: dict[JobState, str] = {
    JobState.QUEUED: "Queued",
    JobState.ENHANCING: "Enhancing the prompt",
    JobState.PREVIEW: "Generating the shape",
    JobState.REFINING: "Texturing",
    JobState.DOWNLOADING: "Saving the files",
    JobState.DONE: "Done",
    JobState.FAILED: "Failed",
    JobState.CANCELED: "Canceled",
}

# The detail line while Lumi waits for an answer from Meshy (a slow request, its retries): without it a job
# whose Meshy stays silent would sit at an unexplained 0% until the request gives up.
WAITING_FOR_MESHY = "waiting for Meshy"

# Share of the bar each stage fills: (start, width) in percent. Untextured jobs give the shape the room
# the texture would have taken.
_SPANS_TEXTURED: dict[JobState, tuple[float, float]] = {
    JobState.QUEUED: (0, 0),
    JobState.ENHANCING: (1, 4),
    JobState.PREVIEW: (5, 50),
    JobState.REFINING: (55, 35),
    JobState.DOWNLOADING: (90, 10),
}
_SPANS_PLAIN: dict[JobState, tuple[float, float]] = {
    **_SPANS_TEXTURED,
    JobState.PREVIEW: (5, 85),
    JobState.REFINING: (90, 0),
}


def overall_percent(state: JobState, stage_percent: float, *, textured: bool) -> int:
    """Progress of the whole job from the progress (0-100) of its current stage."""
    if state is JobState.DONE:
        return 100
    spans = _SPANS_TEXTURED if textured else _SPANS_PLAIN
    start, width = spans.get(state, (0, 0))
    return int(max(0.0, min(100.0, start + width * max(0.0, min(100.0, stage_percent)) / 100)))


@dataclass(frozen=True)
class JobMessage:
    """Where a job is shown in Discord: the reply to the command that asked for it (edited through the
    interaction's token while that lives) and, once that token is spent, a message of its own."""

    application_id: int | None = None
    interaction_token: str | None = field(default=None, repr=False)
    message_id: int | None = None
    channel_message_id: int | None = None


@dataclass(frozen=True)
class JobSnapshot:
    """One job's live state. ``detail`` is a short human line ("position 3 in the queue").

    It carries what a message about the job needs, so that showing it asks nothing more of the service:
    ``message`` (where it is shown) and, on the final snapshot of a finished job, ``files``. Neither goes
    into ``to_json`` (the web page's view): the token is a secret, and links are signed when served.
    """

    job_id: str
    state: JobState
    progress: int = 0
    stage_progress: int = 0
    detail: str = ""
    queue_position: int | None = None
    prompt: str = ""
    enhanced_prompt: str | None = None
    enhancer: str | None = None
    error: str | None = None
    textured: bool = True
    user_id: int = 0
    guild_id: int | None = None
    channel_id: int | None = None
    parent_job_id: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    message: JobMessage | None = None
    files: JobFiles | None = None
    version: int = 0

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    def elapsed_s(self, now: datetime | None = None) -> float:
        end = self.finished_at or now or utcnow()
        return max(0.0, (end - self.created_at).total_seconds())

    def evolve(self, **changes: object) -> JobSnapshot:
        return replace(self, version=self.version + 1, **changes)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.job_id,
            "state": self.state.value,
            "stage": STAGE_LABELS[self.state],
            "progress": self.progress,
            "stage_progress": self.stage_progress,
            "detail": self.detail,
            "queue_position": self.queue_position,
            "prompt": self.prompt,
            "enhanced_prompt": self.enhanced_prompt,
            "error": self.error,
            "textured": self.textured,
            "elapsed_s": round(self.elapsed_s(), 1),
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def progress_bar(percent: float, width: int = 20) -> str:
    """``▰▰▰▱▱▱`` style bar; monospace-free, so it renders the same in Discord and terminals."""
    filled = round(width * max(0.0, min(100.0, percent)) / 100)
    return "▰" * filled + "▱" * (width - filled)


def format_elapsed(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def stage_line(snapshot: JobSnapshot) -> str:
    """ "Generating the shape · 40%" or "Queued · position 3"; the detail wins when there is one."""
    label = STAGE_LABELS[snapshot.state]
    if snapshot.detail:
        return f"{label} · {snapshot.detail}"
    if snapshot.state in (JobState.PREVIEW, JobState.REFINING, JobState.DOWNLOADING):
        return f"{label} · {snapshot.stage_progress}%"
    return label


def progress_text(snapshot: JobSnapshot, *, now: datetime | None = None) -> str:
    """Three lines: bar and percent, stage, elapsed time."""
    return (
        f"{progress_bar(snapshot.progress)} {snapshot.progress}%\n"
        f"{stage_line(snapshot)}\n"
        f"Elapsed: {format_elapsed(snapshot.elapsed_s(now))}"
    )


# ------------------------------------------------------------------------------------------- throttle

T = TypeVar("T")
Sender = Callable[[str, T], Awaitable[None]]


@dataclass
class _Slot(Generic[T]):
    pending: T | None = None
    has_pending: bool = False
    last_sent: float = float("-inf")
    worker: asyncio.Task[None] | None = None
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class EditThrottle(Generic[T]):
    """Send the newest value per key, at most once every ``interval_s`` seconds per key (counted from
    the end of the previous send, so edits also arrive at least that far apart).

    ``submit`` never waits: it replaces the value waiting for that key, and a worker per key sends it
    when the interval allows. Values superseded in between are skipped (nobody needs to see 41% once
    42% is known), the last one always goes out. Sends for one key never overlap, so edits of one
    message cannot arrive out of order. A failing send is logged and does not stop later ones.
    """

    def __init__(
        self,
        send: Sender[T],
        *,
        interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self.interval_s = interval_s
        self._clock = clock
        self._slots: dict[str, _Slot[T]] = {}
        self.sent = 0

    def submit(self, key: str, value: T) -> None:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
        slot.pending = value
        slot.has_pending = True
        slot.idle.clear()
        if slot.worker is None or slot.worker.done():
            slot.worker = asyncio.create_task(self._drain(key, slot), name=f"throttle-{key}")

    async def _drain(self, key: str, slot: _Slot[T]) -> None:
        try:
            while slot.has_pending:
                wait = slot.last_sent + self.interval_s - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                value = slot.pending
                slot.pending, slot.has_pending = None, False
                try:
                    await self._send(key, value)  # type: ignore[arg-type]
                    self.sent += 1
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("sending an update for %s failed", key)
                finally:
                    # Counted from when the send ended: a slow edit (Discord busy, a big embed) must not
                    # let the next one arrive sooner than the interval after it.
                    slot.last_sent = self._clock()
        finally:
            slot.idle.set()

    async def wait_idle(self, key: str) -> None:
        """Return once everything submitted for ``key`` so far has been sent (or failed)."""
        slot = self._slots.get(key)
        if slot is not None and (slot.has_pending or (slot.worker is not None and not slot.worker.done())):
            await slot.idle.wait()

    def forget(self, key: str) -> None:
        """Drop a finished key's bookkeeping (its worker, if any, finishes what it has)."""
        slot = self._slots.get(key)
        if slot is not None and not slot.has_pending and (slot.worker is None or slot.worker.done()):
            del self._slots[key]

    async def close(self) -> None:
        workers = [slot.worker for slot in self._slots.values() if slot.worker is not None]
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._slots.clear()
