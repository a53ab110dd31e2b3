"""Live 3D progress across processes (distributed mode): every snapshot a process publishes for a job it
runs is also sent on PostgreSQL's ``lumi_job_events`` channel; every process listening feeds it to its own
subscribers (the web page's event stream), whichever process runs the job.

Only subscribers hear remote snapshots: listeners (the Discord cog) edit a job's messages, and only the
process running the job does that, as one process always did. The wire form leaves out where the job is
shown (the interaction token is a secret) and its files (the final snapshot's links are read from the rows
when served). Sends are coalesced per job: while one NOTIFY is on its way, only the newest snapshot waits,
so a fast Meshy stream costs at most one round trip at a time per job. NOTIFY is best effort: a missed
snapshot is made good by the next one, and the row stays the truth.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import fields
from datetime import datetime
from typing import Any

from bot.services.generate3d.events import JobEvents
from bot.services.generate3d.progress import JobSnapshot
from storage.db import Database
from storage.models import JobState
from storage.pg_channels import MAX_PAYLOAD_BYTES, notify

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "lumi_job_events"

_LEFT_OUT = {"message", "files"}
_DATES = {"created_at", "finished_at"}


def snapshot_to_wire(snapshot: JobSnapshot, *, origin: str) -> str:
    data = {f.name: getattr(snapshot, f.name) for f in fields(JobSnapshot) if f.name not in _LEFT_OUT}
    data["state"] = snapshot.state.value
    for name in _DATES:
        value = data[name]
        data[name] = value.isoformat() if isinstance(value, datetime) else None
    payload = json.dumps({"origin": origin, "snapshot": data}, separators=(",", ":"))
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        # Prompts are bounded well below this; an enhanced prompt is the only long field.
        data["enhanced_prompt"] = (snapshot.enhanced_prompt or "")[:1000]
        payload = json.dumps({"origin": origin, "snapshot": data}, separators=(",", ":"))
    return payload


def snapshot_from_wire(payload: str) -> tuple[str, JobSnapshot]:
    """The sender and its snapshot; ``ValueError`` (or ``KeyError``/``TypeError``) for anything else."""
    message = json.loads(payload)
    data: dict[str, Any] = dict(message["snapshot"])
    data["state"] = JobState(data["state"])
    for name in _DATES:
        data[name] = datetime.fromisoformat(data[name]) if data.get(name) else None
    if data["created_at"] is None:
        raise ValueError("a snapshot without its creation time")
    known = {f.name for f in fields(JobSnapshot)} - _LEFT_OUT
    return str(message["origin"]), JobSnapshot(**{k: v for k, v in data.items() if k in known})


class EventFanout:
    """Sends this process's snapshots to the others and hands theirs to local subscribers."""

    def __init__(self, database: Database, events: JobEvents, *, origin: str) -> None:
        self.database = database
        self.events = events
        self.origin = origin
        self._pending: dict[str, JobSnapshot] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}

    def attach(self) -> None:
        self.events.relay = self.send

    def detach(self) -> None:
        self.events.relay = None

    def send(self, snapshot: JobSnapshot) -> None:
        self._pending[snapshot.job_id] = snapshot
        if snapshot.job_id not in self._senders:
            task = asyncio.create_task(self._drain(snapshot.job_id), name=f"gen3d-fanout-{snapshot.job_id}")
            self._senders[snapshot.job_id] = task

    async def _drain(self, job_id: str) -> None:
        try:
            while (snapshot := self._pending.pop(job_id, None)) is not None:
                try:
                    await notify(
                        self.database, EVENTS_CHANNEL, snapshot_to_wire(snapshot, origin=self.origin)
                    )
                except Exception as error:
                    log.warning("could not send job %s's progress to other processes: %s", job_id, error)
        finally:
            self._senders.pop(job_id, None)

    def received(self, payload: str) -> None:
        try:
            origin, snapshot = snapshot_from_wire(payload)
        except (ValueError, KeyError, TypeError) as error:
            log.warning("ignored a malformed job event (%s): %r", error, payload[:200])
            return
        if origin != self.origin:
            self.events.deliver(snapshot)

    async def close(self) -> None:
        self.detach()
        tasks = list(self._senders.values())
        if tasks:
            # The last snapshots (a job's end) are worth a moment; then stop.
            await asyncio.wait(tasks, timeout=2.0)
        for task in tasks:
            task.cancel()
