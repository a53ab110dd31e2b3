"""Generated files are kept ``keep_days`` days; older ones are deleted and their jobs marked as expired.

The job row stays (``/3d history`` still lists it, the viewer still shows its prompt). Its options record
when the files went and how long they had been kept, so the history, the viewer and old download links
say "files expired after N days" instead of pointing at nothing. A job's age is the age of its stored
files. The clean-up runs once at start (catching up on whatever expired while Lumi was down) and then
every ``interval_s``; rows change in one transaction, blobs are deleted after it commits because a blob
deletion cannot be rolled back.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.services.periodic import PeriodicTask
from storage import repo
from storage.blobs import BlobStore
from storage.db import Database
from storage.models import GenerationJob, utcnow

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
        """Delete the files of every job past the retention time; returns those jobs' ids."""
        if self.keep_days == 0:
            return []
        now = now or utcnow()
        before = now - timedelta(days=self.keep_days)
        expired: list[str] = []
        while True:
            batch, keys = await self._expire_batch(before, now)
            await self._delete_blobs(keys)
            expired.extend(batch)
            if len(batch) < _BATCH:
                break
        if expired:
            log.info("deleted the files of %d 3D job(s) older than %d days", len(expired), self.keep_days)
        return expired

    async def _expire_batch(self, before: datetime, now: datetime) -> tuple[list[str], list[str]]:
        keys: list[str] = []
        async with self.database.session() as session:
            job_ids = await repo.jobs_with_files_before(session=session, before=before, limit=_BATCH)
            for job_id in job_ids:
                for asset in await repo.list_job_assets(session=session, job_id=job_id):
                    keys.append(asset.key)
                    await repo.delete_asset(session=session, key=asset.key)
                job = await repo.get_job(session=session, job_id=job_id)
                if job is not None:
                    marked = {FILES_EXPIRED_AT: now.isoformat(), FILES_KEPT_DAYS: self.keep_days}
                    await repo.update_job(session=session, job=job, options={**job.options, **marked})
            await session.commit()
        return job_ids, keys

    async def _delete_blobs(self, keys: list[str]) -> None:
        for key in keys:
            try:
                await self.blobs.delete(key)
            except Exception:
                # The row is gone, so nothing links to the blob any more; it only takes space.
                log.exception("could not delete expired blob %s", key)


class GeneratedFileCleanup(PeriodicTask):
    """Runs ``GeneratedFileRetention.purge_expired`` at start and then every ``interval_s`` seconds."""

    def __init__(self, retention: GeneratedFileRetention, *, interval_s: float) -> None:
        super().__init__(
            interval_s=interval_s,
            name="lumi-generation-retention",
            description="3D file clean-up",
            logger=log,
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
