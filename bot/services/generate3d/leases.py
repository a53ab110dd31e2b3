"""The leases this process holds on claimed 3D jobs (distributed mode), and how it checks they still hold.

A claim gives the job's row a new lease epoch (`job_rows.claim_job`). Every write of the holder is fenced
on it (`job_rows.write_job`), which catches a lost lease at the next write. Between writes, a worker that
was paused (a stalled host, SIGSTOP) past the heartbeat timeout may have lost its job to another worker
without knowing: before each Meshy request and each progress report, ``confirm`` reads the row's epoch
again once the last confirmation is older than ``trust_s`` (a quarter of the heartbeat timeout), so a
resumed worker stops with ``LeaseLost`` before it asks Meshy anything more.

Jobs run by an embedded Lumi hold no lease: nothing here applies to them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.services.generate3d.job_rows import lease_epoch
from bot.services.generate3d.shapes import JobGone, LeaseLost
from storage.db import Database


@dataclass
class Lease:
    epoch: int
    confirmed_at: float


class Leases:
    def __init__(self, database: Database, *, trust_s: float) -> None:
        self.database = database
        self.trust_s = trust_s
        self._held: dict[str, Lease] = {}

    def take(self, job_id: str, epoch: int) -> None:
        self._held[job_id] = Lease(epoch, time.monotonic())

    def drop(self, job_id: str) -> None:
        self._held.pop(job_id, None)

    def epoch(self, job_id: str) -> int | None:
        lease = self._held.get(job_id)
        return None if lease is None else lease.epoch

    def confirmed(self, job_id: str) -> None:
        """A fenced write just succeeded: the lease held at that moment."""
        lease = self._held.get(job_id)
        if lease is not None:
            lease.confirmed_at = time.monotonic()

    async def confirm(self, job_id: str) -> None:
        """Raise ``LeaseLost`` (``JobGone`` for a deleted row) when another worker holds the job now."""
        lease = self._held.get(job_id)
        if lease is None or time.monotonic() - lease.confirmed_at < self.trust_s:
            return
        current = await lease_epoch(self.database, job_id)
        if current is None:
            raise JobGone(job_id)
        if current != lease.epoch:
            raise LeaseLost(job_id)
        lease.confirmed_at = time.monotonic()
