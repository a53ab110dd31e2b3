"""The shapes of 3D generation: options, requests, errors, results, and pure helpers (the settings are
`config.GenerationConfig`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypedDict

from bot.errors import UserFacingError
from bot.services.generate3d.job_files import AssetGroups, JobAsset, JobFiles
from bot.services.generate3d.progress import JobMessage, JobSnapshot
from bot.services.generate3d.prompts import PromptVerdict
from inference.remote.meshy import (
    MeshyAuthError,
    MeshyClient,
    MeshyConnectionError,
    MeshyDeadlineExceeded,
    MeshyError,
    MeshyForbidden,
    MeshyNoCredits,
    MeshyRateLimited,
    MeshyServerError,
    MeshyStatus,
    MeshyTaskFailed,
    MeshyTaskNotFound,
    MeshyTimeout,
)
from storage.blobs import BlobStoreUnavailable
from storage.models import GenerationJob, utcnow

DEFAULT_FORMATS: tuple[str, ...] = ("glb", "fbx", "obj", "usdz")
GENERIC_FAILURE = "Something went wrong on Lumi's side while generating. The operators have the details."
STORAGE_FAILURE = (
    "The model was generated, but Lumi could not save its files: its file storage is not answering. "
    "The operators have the details; please try again later."
)


# ----------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class GenerationOptions:
    texture: bool = True
    enhance: bool = True
    style: str | None = None
    polycount: int | None = None
    formats: tuple[str, ...] = DEFAULT_FORMATS

    def to_json(self) -> dict[str, Any]:
        return {
            "texture": self.texture,
            "enhance": self.enhance,
            "style": self.style,
            "polycount": self.polycount,
            "formats": list(self.formats),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenerationOptions:
        formats = data.get("formats")
        return cls(
            texture=bool(data.get("texture", True)),
            enhance=bool(data.get("enhance", True)),
            style=data.get("style") if isinstance(data.get("style"), str) else None,
            polycount=data.get("polycount") if isinstance(data.get("polycount"), int) else None,
            formats=tuple(formats) if isinstance(formats, list) and formats else DEFAULT_FORMATS,
        )


@dataclass(frozen=True)
class GenerationRequest:
    user_id: int
    prompt: str
    options: GenerationOptions = field(default_factory=GenerationOptions)
    guild_id: int | None = None
    channel_id: int | None = None
    interaction_token: str | None = None
    application_id: int | None = None
    # The Discord message showing the job, known before the job starts so its first update can edit it.
    message_id: int | None = None
    # Jobs from the command line or a benchmark skip quotas.
    enforce_quotas: bool = True


@dataclass(frozen=True)
class Admission:
    """A request that passed its checks (style, prompt, quotas), made by ``GenerationService.admit``.

    ``submit`` stores it as it is, without checking again, so one request reads its quotas once.
    ``verdict`` is None when the caller vouched for the prompt (``checked=True``).
    """

    request: GenerationRequest
    verdict: PromptVerdict | None = None

    def shown_in(self, message_id: int | None) -> Admission:
        """The same admission, for a job shown in ``message_id`` (known only once the command is deferred)."""
        return replace(self, request=replace(self.request, message_id=message_id))


class JobOrigin(TypedDict, total=False):
    """Where a job is asked for from: the `GenerationRequest` fields besides user, prompt and options."""

    guild_id: int | None
    channel_id: int | None
    interaction_token: str | None
    application_id: int | None
    message_id: int | None
    enforce_quotas: bool


# ---------------------------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class ModeratorAlert:
    """A blocked prompt, for the guild's moderators (``mod_channel_id`` None: no channel configured)."""

    guild_id: int
    channel_id: int | None
    user_id: int
    prompt: str
    reason: str
    mod_channel_id: int | None


class PromptRejected(UserFacingError):
    def __init__(self, verdict: PromptVerdict, alert: ModeratorAlert | None) -> None:
        super().__init__(verdict.user_message)
        self.verdict = verdict
        self.alert = alert


class QuotaExceeded(UserFacingError):
    pass


class GenerationDisabled(UserFacingError):
    pass


def require_meshy(meshy: MeshyClient | None) -> MeshyClient:
    """The client, or ``GenerationDisabled`` when no API key is configured."""
    if meshy is None:
        raise GenerationDisabled(
            "3D generation is not set up on this Lumi: an operator needs to set MESHY_API_KEY."
        )
    return meshy


class JobNotFound(UserFacingError):
    pass


class JobGone(Exception):
    """The row was canceled or deleted by someone else: the runner stops quietly."""


class LeaseLost(JobGone):
    """Another worker claimed the job since this one did (its lease epoch moved on): this worker stops
    without writing the row or asking Meshy anything more. The new holder resumes from the row."""


def failure_message(error: BaseException, *, deadline_s: float | None = None) -> str:
    """A specific sentence for the person who asked; operators get the exception in the log."""
    if isinstance(error, MeshyTaskFailed):
        if error.task.status is MeshyStatus.CANCELED:
            return "The 3D service canceled this task. Nothing was charged for it."
        reason = error.task.error_message or "no reason given"
        return f"The 3D service could not generate this model ({reason}). Failed tasks are not charged."
    if isinstance(error, MeshyAuthError):
        return "The 3D service rejected Lumi's API key (401). An operator needs to check MESHY_API_KEY."
    if isinstance(error, MeshyNoCredits):
        return "The 3D service account is out of credits (402). Ask an operator to top it up."
    if isinstance(error, MeshyForbidden):
        return "The 3D service refused this request for Lumi's account (403)."
    if isinstance(error, MeshyTaskNotFound):
        return "The 3D service no longer has this task (404): it was deleted or has expired. Try Regenerate."
    if isinstance(error, MeshyRateLimited):
        return "The 3D service is receiving too many requests (429). Please try again in a minute."
    if isinstance(error, MeshyDeadlineExceeded):
        minutes = f" after {deadline_s / 60:.0f} minutes" if deadline_s else ""
        return f"The 3D model was still not finished{minutes}, so Lumi gave up on it."
    if isinstance(error, MeshyServerError):
        return "The 3D service had a server error (5xx). Please try again later."
    if isinstance(error, MeshyTimeout):
        return "The 3D service did not answer in time. Please try again later."
    if isinstance(error, MeshyConnectionError):
        return "Lumi could not reach the 3D service. Please try again later."
    if isinstance(error, MeshyError):
        return error.user_message
    if isinstance(error, BlobStoreUnavailable):
        return STORAGE_FAILURE
    return GENERIC_FAILURE


# --------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class JobResult(AssetGroups):
    """A job with its files (none once they expired), for the web page and the command line."""

    job: GenerationJob
    assets: list[JobAsset]

    @property
    def all_assets(self) -> Sequence[JobAsset]:
        return self.assets


def day_start(now: datetime | None = None) -> datetime:
    now = now or utcnow()
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


# ------------------------------------------------------------------------------------------------ helpers


def snapshot_from_row(job: GenerationJob, files: JobFiles | None = None) -> JobSnapshot:
    """The job as its row says; ``files`` go on the final snapshot of a finished job."""
    options = GenerationOptions.from_json(job.options)
    enhancer = job.options.get("enhancer")
    return JobSnapshot(
        job_id=job.id,
        state=job.state,
        progress=job.progress,
        detail="" if job.state.is_terminal else job.stage_detail,
        prompt=job.prompt,
        enhanced_prompt=job.enhanced_prompt,
        enhancer=enhancer if isinstance(enhancer, str) else None,
        error=job.error,
        textured=options.texture,
        user_id=job.user_id,
        guild_id=job.guild_id,
        channel_id=job.channel_id,
        parent_job_id=job.parent_job_id,
        created_at=job.created_at,
        finished_at=job.finished_at,
        message=JobMessage(
            application_id=job.application_id,
            interaction_token=job.interaction_token,
            message_id=job.message_id,
            channel_message_id=job.channel_message_id,
        ),
        files=files,
    )
