"""The leases this process holds on claimed 3D jobs (distributed mode), and how it checks they still hold.

A claim gives the job's row a new lease epoch (`job_rows.claim_job`). Every write of the holder is fenced
on it (`job_rows.write_job`), which catches a lost lease at the next write. Between writes, a worker that
was paused (a stalled host, SIGSTOP) past the heartbeat timeout may have lost its job to another worker
without knowing: before each Meshy request and each progress report, ``confirm`` reads the row's epoch
again once the last confirmation is older than ``trust_s`` (a quarter of the heartbeat timeout), so a
resumed worker stops with ``LeaseLost`` before it asks Meshy anything more.

A lease found lost is remembered (``shows``): a worker that wakes up with a progress edit still waiting
for a job another worker holds (and may have finished) must not send it, or the job's message would go
back from the result to an old progress view.

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


# Jobs this process lost to another worker, newest last; only takeovers add to it, so it stays small.
MAX_REMEMBERED_LOST = 1000


class Leases:
    def __init__(self, database: Database, *, trust_s: float) -> None:
        self.database = database
        self.trust_s = trust_s
        self._held: dict[str, Lease] = {}
        self._lost: dict[str, None] = {}

    def take(self, job_id: str, epoch: int) -> None:
        self._held[job_id] = Lease(epoch, time.monotonic())
        self._lost.pop(job_id, None)

    def lost(self, job_id: str) -> None:
        """Another worker holds the job now (found by a fenced write or ``confirm``). The lease itself
        stays until the job's task here ends (``drop``): its epoch keeps fencing whatever that task
        still tries to write."""
        self._lost[job_id] = None
        while len(self._lost) > MAX_REMEMBERED_LOST:
            del self._lost[next(iter(self._lost))]

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
        if lease is None:
            return
        if job_id in self._lost:
            raise LeaseLost(job_id)
        if time.monotonic() - lease.confirmed_at < self.trust_s:
            return
        current = await lease_epoch(self.database, job_id)
        if current is None:
            raise JobGone(job_id)
        if current != lease.epoch:
            self.lost(job_id)
            raise LeaseLost(job_id)
        lease.confirmed_at = time.monotonic()

    async def shows(self, job_id: str) -> bool:
        """Whether this process may still show the job's progress: not once it lost the job's lease."""
        if job_id in self._lost:
            return False
        try:
            await self.confirm(job_id)
        except LeaseLost:
            return False
        except JobGone:
            return True
        return True
