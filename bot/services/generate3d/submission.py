"""Starting 3D jobs: a request admitted once (style, prompt check, quotas), then stored and started without
a second check; and new rows from a finished job (texture its shape, or a new shape from the same prompt).

Quotas are counted when a request is admitted, so a refusal comes before any slow work. On PostgreSQL,
where several Lumi processes may submit for one user, they are counted again in the transaction that
inserts the job, after it took the user's and the guild's quota locks (`repo_jobs.lock_quotas`): two
submissions at once cannot both pass a limit they reach together. On SQLite (one process) they are read
once, at admission, as before: two requests admitted at the same moment can still both pass there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Unpack

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.errors import UserFacingError
from bot.services.generate3d.config import GenerationConfig
from bot.services.generate3d.job_rows import require_job
from bot.services.generate3d.prompts import STYLES, PromptChecker, PromptVerdict
from bot.services.generate3d.shapes import (
    Admission,
    GenerationOptions,
    GenerationRequest,
    JobOrigin,
    ModeratorAlert,
    PromptRejected,
    QuotaExceeded,
    day_start,
    require_meshy,
)
from inference.remote.meshy import MeshyClient
from storage.db import Database
from storage.models import GenerationJob, GuildSettings, JobState
from storage.repo import guilds as repo_guilds
from storage.repo import jobs as repo_jobs

log = logging.getLogger(__name__)

Starter = Callable[[GenerationJob], Awaitable[None]]


class JobSubmission:
    """Checks requests and stores new jobs; ``start`` hands each new row to the runner."""

    def __init__(
        self,
        *,
        database: Database,
        meshy: MeshyClient | None,
        checker: PromptChecker,
        config: GenerationConfig,
        start: Starter,
    ) -> None:
        self.database = database
        self.meshy = meshy
        self.checker = checker
        self.config = config
        self._start = start

    # -- checks -------------------------------------------------------------------------------------

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
                settings = await repo_guilds.get_guild_settings(session=session, guild_id=guild_id)
                await session.commit()
            alert = ModeratorAlert(guild_id, channel_id, user_id, prompt, reason, settings.mod_channel_id)
        raise PromptRejected(verdict, alert)

    async def check_quotas(self, request: GenerationRequest) -> None:
        if not request.enforce_quotas:
            return
        async with self.database.session() as session:
            settings = None
            if request.guild_id is not None:
                settings = await repo_guilds.get_guild_settings(session=session, guild_id=request.guild_id)
                await session.commit()
            await self._count_against_limits(session, request, settings)

    async def _recheck_quotas_locked(self, session: AsyncSession, request: GenerationRequest) -> None:
        """PostgreSQL only: the quota check again, inside the inserting transaction, under its quota locks.

        Nothing here commits (a commit would end the transaction and its locks before the insert), so the
        guild's settings are only read: a guild without a row has the defaults.
        """
        if not request.enforce_quotas or self.database.backend != "postgresql":
            return
        await repo_jobs.lock_quotas(session=session, user_id=request.user_id, guild_id=request.guild_id)
        settings = None
        if request.guild_id is not None:
            settings = await repo_guilds.find_guild_settings(session=session, guild_id=request.guild_id)
        await self._count_against_limits(session, request, settings)

    async def _count_against_limits(
        self, session: AsyncSession, request: GenerationRequest, settings: GuildSettings | None
    ) -> None:
        """Raise ``QuotaExceeded`` when the user's running jobs or the day's jobs reach a limit."""
        config = self.config
        user_limit, guild_limit = config.daily_user_limit, config.daily_guild_limit
        if settings is not None:
            if settings.generation_daily_user_limit is not None:
                user_limit = settings.generation_daily_user_limit
            if settings.generation_daily_guild_limit is not None:
                guild_limit = settings.generation_daily_guild_limit
        active = await repo_jobs.count_active_jobs(session=session, user_id=request.user_id)
        if active >= config.user_concurrent_limit:
            raise QuotaExceeded(
                f"You already have {active} 3D job(s) running (limit {config.user_concurrent_limit}). "
                "Wait for one to finish or stop one with `/3d cancel`."
            )
        since = day_start()
        reset = int((since + timedelta(days=1)).timestamp())
        # Failed jobs cost nothing at Meshy, so they do not count against anyone.
        used = await repo_jobs.count_jobs_since(
            session=session, since=since, user_id=request.user_id, exclude_states=[JobState.FAILED]
        )
        if used >= user_limit:
            raise QuotaExceeded(
                f"You have used your {user_limit} 3D generations for today. The count resets <t:{reset}:R>."
            )
        if request.guild_id is not None:
            used = await repo_jobs.count_jobs_since(
                session=session, since=since, guild_id=request.guild_id, exclude_states=[JobState.FAILED]
            )
            if used >= guild_limit:
                raise QuotaExceeded(
                    f"This server has used its {guild_limit} 3D generations for today. "
                    f"The count resets <t:{reset}:R>."
                )

    # -- new jobs -----------------------------------------------------------------------------------

    async def admit(self, request: GenerationRequest, *, checked: bool = False) -> Admission:
        """Check a request once: its style, its prompt (unless ``checked``) and its quotas.

        Raises ``GenerationDisabled``, ``PromptRejected`` (with a moderator alert for abusive prompts),
        ``QuotaExceeded`` or another ``UserFacingError``; returns what ``submit`` takes.
        """
        require_meshy(self.meshy)
        options = request.options
        if options.style is not None and options.style not in STYLES:
            raise UserFacingError(f"Unknown style {options.style!r}; choose one of {', '.join(STYLES)}.")
        verdict = None
        if not checked:
            verdict = await self.check_prompt(
                request.prompt,
                user_id=request.user_id,
                guild_id=request.guild_id,
                channel_id=request.channel_id,
            )
        await self.check_quotas(request)
        return Admission(request, verdict)

    async def submit(self, admission: Admission) -> GenerationJob:
        """Store the admitted job and start it. Returns the new row.

        On PostgreSQL the quotas are checked again (``QuotaExceeded``), under their locks in the inserting
        transaction: another process may have taken the last slot since this request was admitted.
        """
        require_meshy(self.meshy)
        request = admission.request
        async with self.database.session() as session:
            await self._recheck_quotas_locked(session, request)
            job = await repo_jobs.create_job(
                session=session,
                user_id=request.user_id,
                prompt=request.prompt.strip(),
                guild_id=request.guild_id,
                channel_id=request.channel_id,
                options=request.options.to_json(),
                interaction_token=request.interaction_token,
                application_id=request.application_id,
            )
            if request.message_id is not None:
                await repo_jobs.update_job(session=session, job=job, message_id=request.message_id)
            await session.commit()
        log.info("3D job %s created for user %s: %r", job.id, request.user_id, job.prompt[:80])
        await self._start(job)
        return job

    async def refine(
        self,
        job_id: str,
        *,
        user_id: int,
        **origin: Unpack[JobOrigin],
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
            **origin,
        )
        return await self._child(parent, request, preview_task_id=parent.preview_task_id)

    async def regenerate(
        self,
        job_id: str,
        *,
        user_id: int,
        **origin: Unpack[JobOrigin],
    ) -> GenerationJob:
        """A new job with the same prompt, enhanced prompt and options: a new shape from Meshy."""
        parent = await require_job(self.database, job_id)
        request = GenerationRequest(
            user_id=user_id,
            prompt=parent.prompt,
            options=GenerationOptions.from_json(parent.options),
            **origin,
        )
        return await self._child(parent, request, preview_task_id=None)

    async def _child(
        self, parent: GenerationJob, request: GenerationRequest, *, preview_task_id: str | None
    ) -> GenerationJob:
        require_meshy(self.meshy)
        await self.check_quotas(request)
        options = request.options.to_json()
        if preview_task_id is not None:
            options["preview_from_parent"] = True
        async with self.database.session() as session:
            await self._recheck_quotas_locked(session, request)
            job = await repo_jobs.create_job(
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
                await repo_jobs.update_job(session=session, job=job, **changes)
            await session.commit()
        log.info("3D job %s created from %s for user %s", job.id, parent.id, request.user_id)
        await self._start(job)
        return job

    async def _finished_parent(self, job_id: str) -> GenerationJob:
        job = await require_job(self.database, job_id)
        if job.state is not JobState.DONE:
            raise UserFacingError("That 3D job has not finished, so it cannot be refined yet.")
        return job
