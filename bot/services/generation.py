"""Text-to-3D jobs: prompt check, quotas, enhancement, Meshy preview and refine, downloads, resume.

Every job is a ``GenerationJob`` row that moves queued → enhancing → preview → refining → downloading →
done (or failed/canceled). The row is the job's memory; the running ``asyncio`` task only executes it,
so a restarted Lumi picks every unfinished row up again (``resume_unfinished``) and continues where the
row says it was.

Meshy tasks are created at most once per job and stage. Task creation is not idempotent on Meshy's
side, so each creation is bracketed: the time of the request is committed first, the returned task id is
committed right after the response, before anything else happens. A job that finds a request time but
no task id (Lumi died in between, or the request timed out) looks for the task in Meshy's newest tasks
(same prompt and type, created after the request, not owned by another job) before it creates one.

A job waits instead of failing when Meshy's account is full (429 ``NoMoreConcurrentTasks``/
``NoMorePendingTasks``): see ``generation_queue``. Every change is published as a ``JobSnapshot`` to
listeners (the Discord cog) and subscribers (the web page's event stream); nothing here knows Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from bot.errors import UserFacingError
from bot.services.generation_assets import AssetSaver
from bot.services.generation_models import (
    DEFAULT_FORMATS,
    GENERIC_FAILURE,
    GenerationConfig,
    GenerationDisabled,
    GenerationOptions,
    GenerationRequest,
    JobAsset,
    JobGone,
    JobNotFound,
    JobResult,
    ModeratorAlert,
    PromptRejected,
    QuotaExceeded,
    asset_from_row,
    day_start,
    failure_message,
    snapshot_from_row,
)
from bot.services.generation_progress import JobSnapshot, overall_percent
from bot.services.generation_queue import AccountQueue, LocalSlots
from bot.services.generation_tasks import TaskCreator
from bot.services.prompt_check import PromptChecker, PromptVerdict
from bot.services.prompt_enhancer import STYLES, PromptEnhancer
from inference.remote.meshy import (
    MeshyAuthError,
    MeshyClient,
    MeshyError,
    MeshyForbidden,
    MeshyNoCredits,
    MeshyStatus,
    MeshyTask,
)
from storage import repo
from storage.blobs import BlobStore
from storage.db import Database
from storage.models import TERMINAL_JOB_STATES, GenerationJob, JobState

log = logging.getLogger(__name__)

# Meshy's clock and ours differ; a task created "before" our request time by up to this much still counts.
_STAGE_ORDER = {state: rank for rank, state in enumerate(JobState)}

__all__ = [
    "DEFAULT_FORMATS",
    "GENERIC_FAILURE",
    "GenerationConfig",
    "GenerationDisabled",
    "GenerationOptions",
    "GenerationRequest",
    "GenerationService",
    "JobAsset",
    "JobNotFound",
    "JobResult",
    "ModeratorAlert",
    "PromptRejected",
    "QuotaExceeded",
    "failure_message",
]

Listener = Callable[[JobSnapshot], Awaitable[None] | None]


# --------------------------------------------------------------------------------------------- service


class GenerationService:
    """Runs text-to-3D jobs. ``meshy`` None means the feature is not configured (no API key)."""

    def __init__(
        self,
        *,
        database: Database,
        blobs: BlobStore,
        meshy: MeshyClient | None,
        enhancer: PromptEnhancer,
        checker: PromptChecker,
        config: GenerationConfig | None = None,
    ) -> None:
        self.database = database
        self.blobs = blobs
        self.meshy = meshy
        self.enhancer = enhancer
        self.checker = checker
        self.config = config or GenerationConfig()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._live: dict[str, JobSnapshot] = {}
        self._saved_at: dict[str, float] = {}
        self._listeners: list[Listener] = []
        self._subscribers: dict[str, set[asyncio.Queue[JobSnapshot]]] = {}
        self._listener_tasks: set[asyncio.Task[Any]] = set()
        self.local_slots = LocalSlots(self.config.max_concurrent_jobs, self._local_positions)
        self.account_queue = AccountQueue(self.config.queue_retry_s, self._account_positions)
        self._tasks_creator: TaskCreator | None = None
        if meshy is not None:
            self._tasks_creator = TaskCreator(
                meshy=meshy,
                database=database,
                queue=self.account_queue,
                config=self.config,
                save=self._save,
                on_waiting=self._waiting_for_meshy,
            )
        self._closing = False

    @property
    def enabled(self) -> bool:
        return self.meshy is not None

    @property
    def running_jobs(self) -> int:
        return len(self._tasks)

    def _client(self) -> MeshyClient:
        if self.meshy is None:
            raise GenerationDisabled(
                "3D generation is not set up on this Lumi: an operator needs to set MESHY_API_KEY."
            )
        return self.meshy

    # -- listeners and live snapshots ----------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[asyncio.Queue[JobSnapshot]]:
        """A queue receiving every snapshot of ``job_id`` from now on (the newest when the reader lags)."""
        queue: asyncio.Queue[JobSnapshot] = asyncio.Queue(maxsize=16)
        self._subscribers.setdefault(job_id, set()).add(queue)
        try:
            yield queue
        finally:
            subscribers = self._subscribers.get(job_id)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._subscribers[job_id]

    def _publish(self, snapshot: JobSnapshot) -> None:
        self._live[snapshot.job_id] = snapshot
        for queue in self._subscribers.get(snapshot.job_id, ()):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(snapshot)
        for listener in list(self._listeners):
            try:
                result = listener(snapshot)
            except Exception:
                log.exception("a job listener failed on %s", snapshot.job_id)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._listener_tasks.add(task)
                task.add_done_callback(self._listener_done)

    def _listener_done(self, task: asyncio.Future[Any]) -> None:
        self._listener_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a job listener failed", exc_info=task.exception())

    def _update_live(self, job_id: str, **changes: Any) -> JobSnapshot | None:
        current = self._live.get(job_id)
        if current is None:
            return None
        snapshot = current.evolve(**changes)
        self._publish(snapshot)
        return snapshot

    def _creator(self) -> TaskCreator:
        self._client()
        assert self._tasks_creator is not None
        return self._tasks_creator

    def _waiting_for_meshy(self, job_id: str, position: int | None) -> None:
        if position is None:
            self._update_live(job_id, queue_position=None, detail="")
        else:
            self._update_live(
                job_id,
                queue_position=position,
                detail=f"waiting for a free slot at the 3D service (position {position})",
            )

    def _local_positions(self, positions: dict[str, int]) -> None:
        for job_id, position in positions.items():
            live = self._live.get(job_id)
            if live is not None and live.queue_position != position:
                self._update_live(
                    job_id, queue_position=position, detail=f"position {position} in Lumi's queue"
                )

    def _account_positions(self, positions: dict[str, int]) -> None:
        for job_id, position in positions.items():
            live = self._live.get(job_id)
            if live is not None and live.queue_position != position:
                self._waiting_for_meshy(job_id, position)

    async def snapshot(self, job_id: str) -> JobSnapshot | None:
        """The live snapshot, or one built from the row for jobs not running in this process."""
        live = self._live.get(job_id)
        if live is not None:
            return live
        job = await self.get_job(job_id)
        return None if job is None else snapshot_from_row(job)

    # -- reading ---------------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> GenerationJob | None:
        if not re.fullmatch(r"[0-9a-f]{32}", job_id):
            return None
        async with self.database.session() as session:
            return await repo.get_job(session=session, job_id=job_id)

    async def result(self, job_id: str) -> JobResult:
        async with self.database.session() as session:
            job = await repo.get_job(session=session, job_id=job_id)
            if job is None:
                raise JobNotFound("That 3D job does not exist (it may have been deleted).")
            rows = await repo.list_job_assets(session=session, job_id=job_id)
        return JobResult(job, [asset_from_row(row) for row in rows])

    async def read_asset(self, key: str) -> bytes:
        return await self.blobs.read(key)

    async def history(
        self, *, user_id: int, guild_id: int | None = None, limit: int = 10
    ) -> list[GenerationJob]:
        async with self.database.session() as session:
            return await repo.list_user_jobs(session=session, user_id=user_id, guild_id=guild_id, limit=limit)

    # -- checks ----------------------------------------------------------------------------------------

    async def check_prompt(
        self, prompt: str, *, user_id: int, guild_id: int | None = None, channel_id: int | None = None
    ) -> PromptVerdict:
        """Raise ``PromptRejected`` (with a moderator alert for abusive prompts) or return the verdict."""
        verdict = await self.checker.check(prompt)
        if verdict.allowed:
            return verdict
        alert = None
        if verdict.is_abuse and guild_id is not None:
            reason = (
                f"blocked word “{verdict.matched}”"
                if verdict.matched
                else f"profanity score {verdict.profanity_score or 0:.2f}"
            )
            log.info("blocked a 3D prompt from user %s in guild %s: %s", user_id, guild_id, reason)
            async with self.database.session() as session:
                settings = await repo.get_guild_settings(session=session, guild_id=guild_id)
                await session.commit()
            alert = ModeratorAlert(guild_id, channel_id, user_id, prompt, reason, settings.mod_channel_id)
        raise PromptRejected(verdict, alert)

    async def check_quotas(self, request: GenerationRequest) -> None:
        if not request.enforce_quotas:
            return
        config = self.config
        async with self.database.session() as session:
            user_limit, guild_limit = config.daily_user_limit, config.daily_guild_limit
            if request.guild_id is not None:
                settings = await repo.get_guild_settings(session=session, guild_id=request.guild_id)
                await session.commit()
                if settings.generation_daily_user_limit is not None:
                    user_limit = settings.generation_daily_user_limit
                if settings.generation_daily_guild_limit is not None:
                    guild_limit = settings.generation_daily_guild_limit
            active = await _count_active(session, user_id=request.user_id)
            if active >= config.user_concurrent_limit:
                raise QuotaExceeded(
                    f"You already have {active} 3D job(s) running (limit {config.user_concurrent_limit}). "
                    "Wait for one to finish or stop one with `/3d cancel`."
                )
            since = day_start()
            reset = int((since + timedelta(days=1)).timestamp())
            # Failed jobs cost nothing at Meshy, so they do not count against anyone.
            used = await repo.count_jobs_since(
                session=session, since=since, user_id=request.user_id, exclude_states=[JobState.FAILED]
            )
            if used >= user_limit:
                raise QuotaExceeded(
                    f"You have used your {user_limit} 3D generations for today. "
                    f"The count resets <t:{reset}:R>."
                )
            if request.guild_id is not None:
                used = await repo.count_jobs_since(
                    session=session, since=since, guild_id=request.guild_id, exclude_states=[JobState.FAILED]
                )
                if used >= guild_limit:
                    raise QuotaExceeded(
                        f"This server has used its {guild_limit} 3D generations for today. "
                        f"The count resets <t:{reset}:R>."
                    )

    # -- starting jobs ---------------------------------------------------------------------------------

    async def submit(self, request: GenerationRequest, *, checked: bool = False) -> GenerationJob:
        """Check (unless ``checked``), enforce quotas, store the job and start it. Returns the new row."""
        self._client()
        options = request.options
        if options.style is not None and options.style not in STYLES:
            raise UserFacingError(f"Unknown style {options.style!r}; choose one of {', '.join(STYLES)}.")
        if not checked:
            await self.check_prompt(
                request.prompt,
                user_id=request.user_id,
                guild_id=request.guild_id,
                channel_id=request.channel_id,
            )
        await self.check_quotas(request)
        async with self.database.session() as session:
            job = await repo.create_job(
                session=session,
                user_id=request.user_id,
                prompt=request.prompt.strip(),
                guild_id=request.guild_id,
                channel_id=request.channel_id,
                options=options.to_json(),
                interaction_token=request.interaction_token,
                application_id=request.application_id,
            )
            if request.message_id is not None:
                await repo.update_job(session=session, job=job, message_id=request.message_id)
            await session.commit()
        log.info("3D job %s created for user %s: %r", job.id, request.user_id, job.prompt[:80])
        self._start(job)
        return job

    async def refine(
        self,
        job_id: str,
        *,
        user_id: int,
        guild_id: int | None = None,
        channel_id: int | None = None,
        interaction_token: str | None = None,
        application_id: int | None = None,
        message_id: int | None = None,
        enforce_quotas: bool = True,
    ) -> GenerationJob:
        """A new job that textures ``job_id``'s finished shape (its Meshy preview), skipping the preview."""
        parent = await self._finished_parent(job_id)
        if parent.preview_task_id is None:
            raise UserFacingError("That job has no finished shape to texture.")
        options = GenerationOptions.from_json(parent.options)
        request = GenerationRequest(
            user_id=user_id,
            prompt=parent.prompt,
            options=GenerationOptions(
                texture=True,
                enhance=False,
                style=options.style,
                polycount=options.polycount,
                formats=options.formats,
            ),
            guild_id=guild_id,
            channel_id=channel_id,
            interaction_token=interaction_token,
            application_id=application_id,
            message_id=message_id,
            enforce_quotas=enforce_quotas,
        )
        return await self._child(parent, request, preview_task_id=parent.preview_task_id)

    async def regenerate(
        self,
        job_id: str,
        *,
        user_id: int,
        guild_id: int | None = None,
        channel_id: int | None = None,
        interaction_token: str | None = None,
        application_id: int | None = None,
        message_id: int | None = None,
        enforce_quotas: bool = True,
    ) -> GenerationJob:
        """A new job with the same prompt, enhanced prompt and options: a new shape from Meshy."""
        parent = await self._job_or_error(job_id)
        request = GenerationRequest(
            user_id=user_id,
            prompt=parent.prompt,
            options=GenerationOptions.from_json(parent.options),
            guild_id=guild_id,
            channel_id=channel_id,
            interaction_token=interaction_token,
            application_id=application_id,
            message_id=message_id,
            enforce_quotas=enforce_quotas,
        )
        return await self._child(parent, request, preview_task_id=None)

    async def _child(
        self, parent: GenerationJob, request: GenerationRequest, *, preview_task_id: str | None
    ) -> GenerationJob:
        self._client()
        await self.check_quotas(request)
        options = request.options.to_json()
        if preview_task_id is not None:
            options["preview_from_parent"] = True
        async with self.database.session() as session:
            job = await repo.create_job(
                session=session,
                user_id=request.user_id,
                prompt=request.prompt,
                guild_id=request.guild_id,
                channel_id=request.channel_id,
                options=options,
                parent_job_id=parent.id,
                interaction_token=request.interaction_token,
                application_id=request.application_id,
            )
            changes: dict[str, Any] = {}
            if request.message_id is not None:
                changes["message_id"] = request.message_id
            if parent.enhanced_prompt:
                changes["enhanced_prompt"] = parent.enhanced_prompt
            if preview_task_id is not None:
                changes["preview_task_id"] = preview_task_id
            if changes:
                await repo.update_job(session=session, job=job, **changes)
            await session.commit()
        log.info("3D job %s created from %s for user %s", job.id, parent.id, request.user_id)
        self._start(job)
        return job

    async def _job_or_error(self, job_id: str) -> GenerationJob:
        job = await self.get_job(job_id)
        if job is None:
            raise JobNotFound("That 3D job does not exist any more.")
        return job

    async def _finished_parent(self, job_id: str) -> GenerationJob:
        job = await self._job_or_error(job_id)
        if job.state is not JobState.DONE:
            raise UserFacingError("That 3D job has not finished, so it cannot be refined yet.")
        return job

    async def set_message(
        self, job_id: str, *, message_id: int | None = None, channel_message_id: int | None = None
    ) -> None:
        """Remember which Discord message shows the job (the bot edits it after a restart too)."""
        changes: dict[str, Any] = {}
        if message_id is not None:
            changes["message_id"] = message_id
        if channel_message_id is not None:
            changes["channel_message_id"] = channel_message_id
        if changes:
            async with self.database.session() as session:
                job = await repo.get_job(session=session, job_id=job_id)
                if job is not None:
                    await repo.update_job(session=session, job=job, **changes)
                    await session.commit()

    async def resume_unfinished(self) -> int:
        """Start every unfinished job not already running here (oldest first, so queues keep their order)."""
        if self.meshy is None:
            return 0
        async with self.database.session() as session:
            jobs = await repo.list_unfinished_jobs(session=session)
        started = 0
        for job in jobs:
            if job.id not in self._tasks:
                self._start(job)
                started += 1
        if started:
            log.info("resumed %d unfinished 3D job(s)", started)
        return started

    def _start(self, job: GenerationJob) -> None:
        snapshot = snapshot_from_row(job)
        self._publish(snapshot)
        task = asyncio.create_task(self._run(job.id), name=f"gen3d-{job.id}")
        self._tasks[job.id] = task

    async def wait(self, job_id: str) -> GenerationJob:
        """Wait for a job running in this process to end; returns the final row."""
        task = self._tasks.get(job_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
        return await self._job_or_error(job_id)

    # -- cancel and delete -----------------------------------------------------------------------------

    async def find_cancelable(self, *, user_id: int, guild_id: int | None = None) -> GenerationJob | None:
        """The user's newest unfinished job."""
        for job in await self.history(user_id=user_id, guild_id=guild_id, limit=20):
            if not job.state.is_terminal:
                return job
        return None

    async def cancel(self, job_id: str, *, user_id: int, is_moderator: bool = False) -> GenerationJob:
        job = await self._job_or_error(job_id)
        if job.user_id != user_id and not is_moderator:
            raise UserFacingError("Only the person who started a 3D job (or a moderator) can stop it.")
        if job.state.is_terminal:
            raise UserFacingError(f"That 3D job already ended ({job.state.value}).")
        await self._stop_runner(job_id)
        async with self.database.session() as session:
            row = await repo.get_job(session=session, job_id=job_id)
            if row is None:
                raise JobNotFound("That 3D job does not exist any more.")
            if not row.state.is_terminal:
                await repo.update_job(
                    session=session, job=row, state=JobState.CANCELED, stage_detail="canceled"
                )
            await session.commit()
        await self._delete_meshy_tasks(row, only_running=True)
        self._publish(snapshot_from_row(row).evolve(detail="canceled by request"))
        log.info("3D job %s canceled by user %s", job_id, user_id)
        return row

    async def delete(self, job_id: str, *, user_id: int, is_moderator: bool = False) -> GenerationJob:
        """Remove a job, its stored files and (unless another job uses them) its Meshy tasks."""
        job = await self._job_or_error(job_id)
        if job.user_id != user_id and not is_moderator:
            raise UserFacingError("Only the person who made this 3D model (or a moderator) can delete it.")
        await self._stop_runner(job_id)
        async with self.database.session() as session:
            rows = await repo.list_job_assets(session=session, job_id=job_id)
            keys = [row.key for row in rows]
            for key in keys:
                await repo.delete_asset(session=session, key=key)
            row = await repo.get_job(session=session, job_id=job_id)
            if row is not None:
                await session.delete(row)
            await session.commit()
        for key in keys:
            try:
                await self.blobs.delete(key)
            except Exception:
                log.exception("could not delete blob %s of job %s", key, job_id)
        await self._delete_meshy_tasks(job, only_running=False)
        self._live.pop(job_id, None)
        log.info("3D job %s deleted by user %s (%d files)", job_id, user_id, len(keys))
        return job

    async def _stop_runner(self, job_id: str) -> None:
        task = self._tasks.get(job_id)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.account_queue.discard(job_id)

    async def _delete_meshy_tasks(self, job: GenerationJob, *, only_running: bool) -> None:
        if self.meshy is None or self.meshy.is_test_mode:
            return
        for task_id in (job.refine_task_id, job.preview_task_id):
            if task_id is None:
                continue
            try:
                if await _task_shared(self.database, task_id, job.id):
                    continue
                if only_running:
                    task = await self.meshy.get_task(task_id)
                    if task.is_terminal:
                        continue
                await self.meshy.delete_task(task_id)
            except MeshyError as error:
                log.info("could not delete Meshy task %s of job %s: %s", task_id, job.id, error.detail)

    # -- the runner ------------------------------------------------------------------------------------

    async def _run(self, job_id: str) -> None:
        try:
            async with self.local_slots.slot(job_id):
                live = self._live.get(job_id)
                if live is not None and live.queue_position is not None:
                    self._update_live(job_id, queue_position=None, detail="")
                await self._pipeline(job_id)
        except asyncio.CancelledError:
            # Shutdown (the row stays as it is and resumes at the next start) or a cancel/delete, whose
            # caller updates the row after this task has stopped.
            raise
        except JobGone:
            log.info("3D job %s stopped: it was canceled or deleted elsewhere", job_id)
        except Exception as error:
            await self._fail(job_id, error)
        finally:
            self._tasks.pop(job_id, None)
            self._saved_at.pop(job_id, None)
            with contextlib.suppress(Exception):
                await self.account_queue.discard(job_id)

    async def _fail(self, job_id: str, error: Exception) -> None:
        message = failure_message(error, deadline_s=self.config.task_deadline_s)
        if isinstance(error, MeshyAuthError | MeshyNoCredits | MeshyForbidden):
            log.error("3D job %s failed, an operator must act: %s", job_id, error)
        elif isinstance(error, MeshyError):
            log.warning("3D job %s failed: %s", job_id, error.detail)
        else:
            log.error("3D job %s failed", job_id, exc_info=error)
        try:
            job = await self._save(job_id, state=JobState.FAILED, error=message, stage_detail="failed")
        except JobGone:
            return
        except Exception:
            log.exception("could not record the failure of 3D job %s", job_id)
            return
        self._publish(snapshot_from_row(job))

    async def _save(self, job_id: str, **changes: Any) -> GenerationJob:
        """Write changes to the row, refusing to touch a row that was canceled or deleted meanwhile."""
        async with self.database.session() as session:
            job = await repo.get_job(session=session, job_id=job_id)
            if job is None or job.state is JobState.CANCELED:
                raise JobGone(job_id)
            await repo.update_job(session=session, job=job, **changes)
            await session.commit()
        self._saved_at[job_id] = time.monotonic()
        return job

    async def _enter(self, job_id: str, state: JobState, *, textured: bool) -> GenerationJob:
        progress = overall_percent(state, 0, textured=textured)
        job = await self._save(job_id, state=state, progress=progress, stage_detail="")
        self._update_live(
            job_id, state=state, progress=progress, stage_progress=0, detail="", queue_position=None
        )
        return job

    async def _pipeline(self, job_id: str) -> None:
        job = await self._job_or_error(job_id)
        if job.state.is_terminal:
            return
        options = GenerationOptions.from_json(job.options)
        textured = options.texture

        if job.enhanced_prompt is None:
            job = await self._enter(job_id, JobState.ENHANCING, textured=textured)
            if options.enhance:
                enhancement = await self.enhancer.enhance(job.prompt, style=options.style)
                text, backend = enhancement.text, enhancement.backend
            else:
                text, backend = job.prompt, "none"
            job = await self._save(job_id, enhanced_prompt=text, options={**job.options, "enhancer": backend})
            self._update_live(job_id, enhanced_prompt=text, enhancer=backend)

        final: MeshyTask | None = None
        if job.refine_task_id is None and not job.options.get("preview_from_parent"):
            if _STAGE_ORDER[job.state] < _STAGE_ORDER[JobState.PREVIEW]:
                job = await self._enter(job_id, JobState.PREVIEW, textured=textured)
            if job.preview_task_id is None:
                job = await self._creator().create(job, "preview")
            assert job.preview_task_id is not None
            final = await self._follow(job_id, job.preview_task_id, JobState.PREVIEW, textured=textured)

        if textured:
            if _STAGE_ORDER[job.state] < _STAGE_ORDER[JobState.REFINING]:
                job = await self._enter(job_id, JobState.REFINING, textured=textured)
            if job.refine_task_id is None:
                job = await self._creator().create(job, "refine")
            assert job.refine_task_id is not None
            final = await self._follow(job_id, job.refine_task_id, JobState.REFINING, textured=textured)

        assert final is not None
        if _STAGE_ORDER[job.state] < _STAGE_ORDER[JobState.DOWNLOADING]:
            job = await self._enter(job_id, JobState.DOWNLOADING, textured=textured)
        await self._download(job, final, textured=textured)
        job = await self._save(job_id, state=JobState.DONE, progress=100, stage_detail="")
        self._publish(snapshot_from_row(job))
        log.info("3D job %s done", job_id)

    # -- Meshy tasks -----------------------------------------------------------------------------------

    async def _follow(self, job_id: str, task_id: str, stage: JobState, *, textured: bool) -> MeshyTask:
        meshy = self._client()

        async def on_update(task: MeshyTask) -> None:
            await self._task_progress(job_id, stage, task, textured=textured)

        try:
            task = await meshy.follow_task(
                task_id,
                on_update=on_update,
                poll_initial=self.config.poll_initial_s,
                poll_max=self.config.poll_max_s,
                deadline=self.config.task_deadline_s,
                use_stream=self.config.use_stream,
            )
        finally:
            # Whether it ended or broke, one of the account's slots may have freed.
            await self.account_queue.slot_freed()
        task.raise_for_failure()
        return task

    async def _task_progress(self, job_id: str, stage: JobState, task: MeshyTask, *, textured: bool) -> None:
        progress = overall_percent(stage, task.progress, textured=textured)
        if task.status is MeshyStatus.PENDING:
            ahead = task.preceding_tasks
            detail = "waiting at the 3D service" + (f" ({ahead} ahead)" if ahead else "")
        else:
            detail = ""
        self._update_live(
            job_id, progress=progress, stage_progress=task.progress, detail=detail, queue_position=None
        )
        # The row is the job's memory, not its display: it gets progress at most every few seconds.
        if time.monotonic() - self._saved_at.get(job_id, 0.0) >= self.config.progress_save_interval_s:
            await self._save(job_id, progress=progress, stage_detail=detail[:256])

    # -- downloads -------------------------------------------------------------------------------------

    async def _download(self, job: GenerationJob, task: MeshyTask, *, textured: bool) -> None:
        def progress(done: int, total: int) -> None:
            percent = int(100 * done / total)
            self._update_live(
                job.id,
                progress=overall_percent(JobState.DOWNLOADING, percent, textured=textured),
                stage_progress=percent,
                detail=f"{done}/{total} files",
            )

        saver = AssetSaver(
            meshy=self._client(),
            blobs=self.blobs,
            database=self.database,
            max_bytes=self.config.max_asset_bytes,
            concurrency=self.config.download_concurrency,
        )
        await saver.save(job, task, progress)

    # -- shutdown --------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop running jobs without changing their rows (they resume at the next start)."""
        self._closing = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for task in list(self._listener_tasks):
            task.cancel()
        try:
            await self.enhancer.close()
        finally:
            if self.meshy is not None:
                await self.meshy.close()


async def _count_active(session: Any, *, user_id: int) -> int:
    statement = (
        select(sa.func.count())
        .select_from(GenerationJob)
        .where(GenerationJob.user_id == user_id, col(GenerationJob.state).not_in(sorted(TERMINAL_JOB_STATES)))
    )
    return int((await session.exec(statement)).one())


async def _task_shared(database: Database, task_id: str, job_id: str) -> bool:
    """Whether another job still uses the task (a refine job reuses its parent's preview)."""
    async with database.session() as session:
        statement = select(GenerationJob.id).where(
            sa.or_(
                col(GenerationJob.preview_task_id) == task_id, col(GenerationJob.refine_task_id) == task_id
            ),
            GenerationJob.id != job_id,
        )
        return (await session.exec(statement)).first() is not None
