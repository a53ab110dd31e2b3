"""3D generation: a text prompt checked, enhanced and sent to Meshy's text-to-3D API, with live progress,
stored files and download links. No Discord here.

GenerationService (service) admits and submits a request (submission), runs each job through its stages
(runner, queue, meshy_tasks, events, progress), stores the files (assets, job_rows), and removes or
expires them (removal, retention); shapes holds the data shapes, config the feature's settings (built
once from Settings by build, which wires the service), and prompts/ holds the prompt check and enhancer.
"""

from __future__ import annotations

from bot.services.generate3d.build import build_generation_service, prompt_checker, prompt_enhancer
from bot.services.generate3d.config import GenerationConfig
from bot.services.generate3d.job_files import JobFiles
from bot.services.generate3d.progress import (
    STAGE_LABELS,
    EditThrottle,
    JobMessage,
    JobSnapshot,
    format_elapsed,
    progress_bar,
    progress_text,
    stage_line,
)
from bot.services.generate3d.prompts import (
    STYLES,
    Enhancement,
    KeywordEnhancer,
    PromptChecker,
    PromptEnhancer,
)
from bot.services.generate3d.retention import GeneratedFileCleanup
from bot.services.generate3d.service import (
    DEFAULT_FORMATS,
    Admission,
    GenerationOptions,
    GenerationRequest,
    GenerationService,
    JobResult,
    ModeratorAlert,
    PromptRejected,
    files_expired_after_days,
    files_expired_note,
)
from storage.models import GenerationJob, JobState

__all__ = [
    "DEFAULT_FORMATS",
    "STAGE_LABELS",
    "STYLES",
    "Admission",
    "EditThrottle",
    "Enhancement",
    "GeneratedFileCleanup",
    "GenerationConfig",
    "GenerationJob",
    "GenerationOptions",
    "GenerationRequest",
    "GenerationService",
    "JobFiles",
    "JobMessage",
    "JobResult",
    "JobSnapshot",
    "JobState",
    "KeywordEnhancer",
    "ModeratorAlert",
    "PromptChecker",
    "PromptEnhancer",
    "PromptRejected",
    "build_generation_service",
    "files_expired_after_days",
    "files_expired_note",
    "format_elapsed",
    "progress_bar",
    "progress_text",
    "prompt_checker",
    "prompt_enhancer",
    "stage_line",
]
