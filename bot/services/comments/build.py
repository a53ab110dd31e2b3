"""Build the photo-comment service from Settings (the only place that reads the Comments settings).

The service and moderation modules are imported in `build_comment_service` only: `build_writer` is all
that `lumi comment --labels` needs, and it should not wait for the database and Redis code to load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.services.comments.backends import (
    BackendName,
    CommentBackend,
    CommentWriter,
    LocalModelBackend,
    llm_backend,
)
from inference.commenter import register_commenter
from inference.perception import Perceiver, PerceptionConfig, register_perception_models
from inference.registry import ModelRegistry
from inference.runners.faces import FaceDetector

if TYPE_CHECKING:
    from bot.services.comments.service import CommentService
    from bot.services.moderation import ModerationService
    from bot.services.rate_limits import RateLimits
    from storage.db import Database

__all__ = ["CommentOptions", "build_comment_service", "build_perceiver", "build_writer", "comment_options"]


@dataclass(frozen=True)
class CommentOptions:
    """Everything about comments that is configured per process (see the Comments block in Settings)."""

    model_dir: Path | None = None
    face_detector: FaceDetector = "auto"
    objects_weights: str = "yolov8m-oiv7.pt"
    objects_weights_dir: Path | None = None
    objects_download: bool = True
    perception: PerceptionConfig = field(default_factory=PerceptionConfig)
    llm_base_url: str = ""
    llm_api_key: str | None = None
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = 15.0
    llm_max_retries: int = 2
    max_images: int = 4


def comment_options(settings: Settings) -> CommentOptions:
    api_key = settings.comment_llm_api_key
    return CommentOptions(
        model_dir=settings.comment_model_dir,
        face_detector=settings.comment_face_detector,
        objects_weights=settings.comment_objects_weights,
        objects_weights_dir=settings.data_dir / "models",
        objects_download=settings.comment_objects_download,
        perception=PerceptionConfig(
            emotion_min_score=settings.comment_emotion_min_score,
            object_min_score=settings.comment_object_min_score,
            max_labels=settings.comment_max_labels,
        ),
        llm_base_url=settings.comment_llm_base_url.strip(),
        llm_api_key=api_key.get_secret_value() if api_key is not None else None,
        llm_model=settings.comment_llm_model,
        llm_timeout_s=settings.comment_llm_timeout_s,
        llm_max_retries=settings.comment_llm_max_retries,
        max_images=settings.comment_max_images_per_message,
    )


def build_perceiver(registry: ModelRegistry, options: CommentOptions) -> Perceiver:
    register_perception_models(
        registry,
        face_detector=options.face_detector,
        objects_weights=options.objects_weights,
        objects_weights_dir=options.objects_weights_dir,
        objects_download=options.objects_download,
    )
    return Perceiver(registry, options.perception)


def build_writer(registry: ModelRegistry, options: CommentOptions) -> CommentWriter:
    register_commenter(registry, model_dir=options.model_dir)
    backends: dict[BackendName, CommentBackend] = {"local": LocalModelBackend(registry)}
    if options.llm_base_url:
        backends["llm"] = llm_backend(
            options.llm_base_url,
            options.llm_api_key,
            options.llm_model,
            timeout_s=options.llm_timeout_s,
            max_retries=options.llm_max_retries,
        )
    return CommentWriter(backends)


def build_comment_service(
    settings: Settings,
    registry: ModelRegistry,
    *,
    database: Database | None = None,
    moderation: ModerationService | None = None,
    cooldowns: RateLimits | None = None,
) -> CommentService:
    """The service for the bot (with database and moderation gate) or the command line (without).

    Photos are decoded under moderation's caps (its configuration, not a setting read here), at
    perception's 640 px: a photo that moderation decoded at the same scale (one neither scale shrinks)
    is not decoded again for its comment. ``cooldowns``: where channel cooldowns are claimed (shared
    by the processes of a distributed Lumi); in this process's memory when not given.
    """
    from bot.services.comments.service import CommentService
    from bot.services.moderation import moderation_config

    options = comment_options(settings)
    config = moderation.config if moderation is not None else moderation_config(settings)
    return CommentService(
        database=database,
        perceiver=build_perceiver(registry, options),
        writer=build_writer(registry, options),
        moderation=moderation,
        fetcher=moderation.fetcher if moderation is not None else None,
        max_images=options.max_images,
        image_limits=config.image_limits,
        cooldowns=cooldowns,
    )
