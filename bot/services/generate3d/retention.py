"""Generated files are kept ``keep_days`` days; older ones are deleted and their jobs marked as expired.

The job row stays (``/3d history`` still lists it, the viewer still shows its prompt). Its options record
when the files went and how long they had been kept, so the history, the viewer and old download links
say "files expired after N days" instead of pointing at nothing. Only finished jobs (done, failed,
canceled) expire, aged by their newest stored file, so a job resumed after a long downtime keeps its
partial files. The clean-up runs once at start (catching up on whatever expired while Lumi was down) and
then every ``interval_s``. It marks the jobs expired first (from then on their download links answer 410),
then deletes each blob and only after that its asset row: a blob whose deletion failed keeps its row and
is tried again by the next round.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.services.periodic import PeriodicTask
from storage.blobs import BlobStore
from storage.db import Database
from storage.locks import ClusterLock
from storage.models import GenerationJob, utcnow
from storage.repo import assets as repo_assets
from storage.repo import jobs as repo_jobs

__all__ = [
    "GeneratedFileCleanup",
    "GeneratedFileRetention",
    "files_expired_after_days",
    "files_expired_note",
]

log = logging.getLogger(__name__)

FILES_EXPIRED_AT = "files_expired_at"
FILES_KEPT_DAYS = "files_kept_days"
# Jobs handled per transaction; a clean-up round goes on until none is left.
_BATCH = 100


def files_expired_after_days(job: GenerationJob) -> int | None:
    """How many days the job's files were kept before they were deleted; None while they are stored."""
    if FILES_EXPIRED_AT not in job.options:
        return None
    days = job.options.get(FILES_KEPT_DAYS)
    return days if isinstance(days, int) else 0


def files_expired_note(job: GenerationJob) -> str | None:
    """A sentence for people who look for the files of an expired job; None while they are stored."""
    days = files_expired_after_days(job)
    if days is None:
        return None
    return (
        f"The files of this 3D model expired after {days} days and were deleted "
        "(Lumi keeps generated models for a limited time). Regenerate it to get new ones."
    )


class GeneratedFileRetention:
    """Deletes the stored files of jobs older than ``keep_days`` (0 keeps them forever)."""

    def __init__(self, database: Database, blobs: BlobStore, *, keep_days: int) -> None:
        if keep_days < 0:
            raise ValueError("keep_days must be 0 (forever) or positive")
        self.database = database
        self.blobs = blobs
        self.keep_days = keep_days

    async def purge_expired(self, *, now: datetime | None = None) -> list[str]:
        """Delete the files of every finished job past the retention time; returns those jobs' ids.

        A job whose blob could not be deleted last time is returned again when this round deletes it.
        """
        if self.keep_days == 0:
            return []
        now = now or utcnow()
        before = now - timedelta(days=self.keep_days)
        expired: list[str] = []
        seen: set[str] = set()
        while True:
            batch = await self._mark_batch(before, now)
            fresh = [job_id for job_id in batch if job_id not in seen]
            seen.update(batch)
            for job_id in fresh:
                if await self._delete_files(job_id):
                    expired.append(job_id)
            # Jobs whose blobs keep failing come back first; stop once a batch brings nothing new.
            if len(batch) < _BATCH or not fresh:
                break
        if expired:
            log.info("deleted the files of %d 3D job(s) older than %d days", len(expired), self.keep_days)
        return expired

    async def _mark_batch(self, before: datetime, now: datetime) -> list[str]:
        """Mark a batch of jobs past the retention time as expired (once); returns their ids."""
        async with self.database.session() as session:
            job_ids = await repo_assets.jobs_with_files_before(session=session, before=before, limit=_BATCH)
            for job_id in job_ids:
                job = await repo_jobs.get_job(session=session, job_id=job_id)
                if job is not None and FILES_EXPIRED_AT not in job.options:
                    marked = {FILES_EXPIRED_AT: now.isoformat(), FILES_KEPT_DAYS: self.keep_days}
                    await repo_jobs.update_job(session=session, job=job, options={**job.options, **marked})
            await session.commit()
        return job_ids

    async def _delete_files(self, job_id: str) -> bool:
        """Delete the job's blobs, each row after its blob; False when a blob is left for the next round."""
        async with self.database.session() as session:
            keys = [asset.key for asset in await repo_assets.list_job_assets(session=session, job_id=job_id)]
        deleted: list[str] = []
        for key in keys:
            try:
                await self.blobs.delete(key)
            except Exception:
                # The row stays, so the next round tries again; the job is marked, so links answer 410.
                log.exception("could not delete expired blob %s; will retry", key)
            else:
                deleted.append(key)
        if deleted:
            async with self.database.session() as session:
                for key in deleted:
                    await repo_assets.delete_asset(session=session, key=key)
                await session.commit()
        return len(deleted) == len(keys)


class GeneratedFileCleanup(PeriodicTask):
    """Runs ``GeneratedFileRetention.purge_expired`` at start and then every ``interval_s`` seconds."""

    def __init__(self, retention: GeneratedFileRetention, *, interval_s: float) -> None:
        super().__init__(
            interval_s=interval_s,
            name="lumi-generation-retention",
            description="3D file clean-up",
            logger=log,
            # One process of a deployment on PostgreSQL deletes; the others would race it for the same blobs.
            cluster_lock=ClusterLock(retention.database.engine, "3D file clean-up"),
        )
        self.retention = retention
        self.runs = 0

    async def run_once(self) -> list[str]:
        expired = await self.retention.purge_expired()
        self.runs += 1
        return expired

    def start(self) -> None:
        """Start the loop; with files kept forever there is nothing to do and nothing starts."""
        if self.retention.keep_days > 0:
            super().start()
