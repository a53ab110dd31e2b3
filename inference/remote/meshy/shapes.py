"""Meshy text-to-3D data shapes and errors.

Meshy's responses drift over time (null where an object is documented, empty strings for URLs that do
not exist yet, new fields), so every parser here accepts anything JSON-shaped and keeps only what it
can make sense of, within the caps of ``fields`` (a 50 MB task id is refused, not stored). Errors
carry two texts: ``user_message`` is safe to show in Discord, ``str(exc)`` is the detailed line for
operators' logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from inference.remote.meshy.fields import (
    MAX_ERROR_CHARS,
    bounded_int,
    clean_text,
    http_url,
    optional_int,
    task_id_problem,
    url_map,
)

MESHY_TEST_MODE_KEY = "msy_dummy_api_key_for_test_mode_12345678"
"""Meshy's documented test-mode key: every endpoint works, costs nothing, returns a sample task."""

MAX_PROMPT_CHARS = 600
"""Meshy rejects prompts (and texture prompts) longer than this."""

AI_MODELS = frozenset({"meshy-4", "meshy-5", "meshy-6", "latest"})
MODEL_TYPES = frozenset({"standard", "lowpoly"})
TOPOLOGIES = frozenset({"triangle", "quad"})
POSE_MODES = frozenset({"a-pose", "t-pose", ""})
TARGET_FORMATS = frozenset({"glb", "obj", "fbx", "stl", "usdz", "3mf"})
MIN_POLYCOUNT = 100
MAX_POLYCOUNT = 300_000

QUEUE_FULL_MARKERS = ("NoMoreConcurrentTasks", "NoMorePendingTasks")

# Bounds for counts Meshy reports (queue position, credits): beyond them a number is noise.
_MAX_QUEUE: Final = 1_000_000
_MAX_TEXTURE_SETS: Final = 8


class MeshyStatus(StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @classmethod
    def parse(cls, value: object) -> MeshyStatus:
        """Map a status string to the enum; anything unknown counts as still running.

        Treating an unfamiliar status as running (rather than failing) means a new intermediate state
        on Meshy's side only delays the job; the caller's deadline still bounds the wait.
        """
        if isinstance(value, str):
            normalised = value.strip().upper().replace("-", "_")
            if normalised == "CANCELLED":
                return cls.CANCELED
            try:
                return cls(normalised)
            except ValueError:
                pass
        return cls.IN_PROGRESS


_TERMINAL = frozenset({MeshyStatus.SUCCEEDED, MeshyStatus.FAILED, MeshyStatus.CANCELED})


def _as_int(value: object, low: int = 0, high: int = 2**53) -> int:
    return bounded_int(value, low, high, default=0) or 0


def _capped_str(value: object, limit: int) -> str:
    """The text as sent (a prompt is compared with the one Lumi sent), but never longer than ``limit``."""
    return value[:limit] if isinstance(value, str) else ""


def _texture_list(value: object) -> list[dict[str, str]]:
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list):
        return []
    textures = [url_map(item) for item in value[:_MAX_TEXTURE_SETS]]
    return [texture for texture in textures if texture]


def _error_message(value: object) -> str:
    if isinstance(value, Mapping):
        return clean_text(value.get("message"), MAX_ERROR_CHARS)
    return clean_text(value, MAX_ERROR_CHARS)


@dataclass(frozen=True)
class MeshyTask:
    """One text-to-3D task as Meshy reports it.

    Stream events while a task runs carry only ``id``, ``progress`` and ``status``; every other field
    then holds its empty default.
    """

    id: str
    status: MeshyStatus
    type: str = ""
    progress: int = 0
    preceding_tasks: int | None = None
    model_urls: dict[str, str] = field(default_factory=dict)
    thumbnail_url: str | None = None
    video_url: str | None = None
    texture_urls: list[dict[str, str]] = field(default_factory=list)
    prompt: str = ""
    texture_prompt: str = ""
    seed: int | None = None
    created_at: int = 0
    started_at: int = 0
    finished_at: int = 0
    error_message: str = ""
    consumed_credits: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> MeshyTask:
        """Build a task from any decoded JSON value; raises ``MeshyProtocolError`` without an id."""
        if not isinstance(data, Mapping):
            raise MeshyProtocolError(f"expected a task object, got {type(data).__name__}")
        task_id = data.get("id")
        problem = task_id_problem(task_id)
        if problem is not None or not isinstance(task_id, str):
            raise MeshyProtocolError(f"task object with {problem}")
        return cls(
            id=task_id,
            status=MeshyStatus.parse(data.get("status")),
            type=clean_text(data.get("type"), 64),
            progress=_as_int(data.get("progress"), 0, 100),
            preceding_tasks=bounded_int(data.get("preceding_tasks"), 0, _MAX_QUEUE),
            model_urls=url_map(data.get("model_urls")),
            thumbnail_url=http_url(data.get("thumbnail_url")),
            video_url=http_url(data.get("video_url")),
            texture_urls=_texture_list(data.get("texture_urls")),
            prompt=_capped_str(data.get("prompt"), 2 * MAX_PROMPT_CHARS),
            texture_prompt=_capped_str(data.get("texture_prompt"), 2 * MAX_PROMPT_CHARS),
            seed=optional_int(data.get("seed")),
            created_at=_as_int(data.get("created_at")),
            started_at=_as_int(data.get("started_at")),
            finished_at=_as_int(data.get("finished_at")),
            error_message=_error_message(data.get("task_error")),
            consumed_credits=bounded_int(data.get("consumed_credits"), 0, _MAX_QUEUE),
            raw=dict(data),
        )

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def succeeded(self) -> bool:
        return self.status is MeshyStatus.SUCCEEDED

    @property
    def is_refine(self) -> bool:
        return self.type.endswith("refine")

    def progress_key(self) -> tuple[MeshyStatus, int, int | None]:
        """What a progress display cares about; keep-alive re-sends compare equal on it."""
        return (self.status, self.progress, self.preceding_tasks)

    def raise_for_failure(self) -> None:
        """Raise ``MeshyTaskFailed`` when the task ended FAILED or CANCELED."""
        if self.status is MeshyStatus.FAILED or self.status is MeshyStatus.CANCELED:
            raise MeshyTaskFailed(self)


# --------------------------------------------------------------------------------------------- errors


class MeshyError(Exception):
    """Base of every Meshy failure.

    ``user_message`` is safe to show to the person who asked for the model; ``str(exc)`` is the
    detailed text for logs. ``retryable`` says whether the same call may succeed later unchanged.
    """

    default_user_message = "The 3D service failed unexpectedly. Please try again later."
    retryable = False

    def __init__(self, detail: str, *, status: int | None = None, user_message: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.user_message = user_message or self.default_user_message


class MeshyBadRequest(MeshyError):
    """400, or a request this client refuses to send (too-long prompt, unknown option)."""

    def __init__(self, detail: str, *, message: str, status: int | None = 400) -> None:
        super().__init__(detail, status=status, user_message=f"Meshy rejected the request: {message}")
        self.message = message


class MeshyAuthError(MeshyError):
    default_user_message = "The 3D service rejected Lumi's API key. An operator needs to check the Meshy key."


class MeshyNoCredits(MeshyError):
    default_user_message = "The 3D service account is out of credits. Ask an operator to top it up."


class MeshyForbidden(MeshyError):
    default_user_message = "The 3D service refused this request for this account."


class MeshyTaskNotFound(MeshyError):
    default_user_message = "The 3D service no longer knows this task (it may have been deleted or expired)."


class MeshyRateLimited(MeshyError):
    """429 for request rate: the same request will work after ``retry_after`` seconds."""

    default_user_message = "The 3D service is receiving too many requests. Please try again in a moment."
    retryable = True

    def __init__(self, detail: str, *, retry_after: float | None, status: int | None = 429) -> None:
        super().__init__(detail, status=status)
        self.retry_after = retry_after


class MeshyQueueFull(MeshyError):
    """429 ``NoMoreConcurrentTasks``/``NoMorePendingTasks``: wait for a running task to end, then retry."""

    default_user_message = (
        "The 3D service's queue for this account is full. The job will start when a slot frees up."
    )
    retryable = True

    def __init__(self, detail: str, *, reason: str, status: int | None = 429) -> None:
        super().__init__(detail, status=status)
        self.reason = reason


class MeshyServerError(MeshyError):
    default_user_message = "The 3D service is having server trouble. Please try again later."
    retryable = True


class MeshyTimeout(MeshyError):
    default_user_message = "The 3D service did not answer in time. Please try again later."
    retryable = True


class MeshyDeadlineExceeded(MeshyTimeout):
    default_user_message = "The 3D model took too long to generate and was given up."
    retryable = False


class MeshyConnectionError(MeshyError):
    default_user_message = "Lumi could not reach the 3D service. Please try again later."
    retryable = True


class MeshyStreamBroken(MeshyConnectionError):
    """The progress stream ended or broke before the task reached a terminal status."""


class MeshyProtocolError(MeshyError):
    """The service answered with something this client cannot read (not JSON, no task id, ...)."""

    default_user_message = "The 3D service sent an answer Lumi could not read. Please try again later."
    retryable = True


class MeshyDownloadTooLarge(MeshyError):
    default_user_message = "A generated file was larger than Lumi accepts, so it was not saved."


class MeshyAssetUnavailable(MeshyError):
    default_user_message = "A generated file could not be downloaded (its link may have expired)."


class MeshyTaskFailed(MeshyError):
    """The task itself ended FAILED or CANCELED on Meshy's side (credits are refunded by Meshy)."""

    def __init__(self, task: MeshyTask) -> None:
        reason = task.error_message or "no reason given"
        if task.status is MeshyStatus.CANCELED:
            user_message = "The 3D generation was canceled."
        else:
            user_message = f"The 3D service could not generate the model: {reason}"
        super().__init__(
            f"Meshy task {task.id} ended {task.status.value}: {reason}", user_message=user_message
        )
        self.task = task
