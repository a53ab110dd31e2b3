"""Build the photo-comment service from Settings (the only place that reads its settings)."""

from __future__ import annotations

from bot.config import Settings
from bot.services.comments.service import CommentOptions, CommentService, build_perceiver, build_writer
from bot.services.moderation import ModerationService, moderation_config
from inference.perception import PerceptionConfig
from inference.registry import ModelRegistry
from storage.db import Database

__all__ = ["build_comment_service", "comment_options"]


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


def build_comment_service(
    settings: Settings,
    registry: ModelRegistry,
    *,
    database: Database | None = None,
    moderation: ModerationService | None = None,
) -> CommentService:
    """The service for the bot (with database and moderation gate) or the command line (without).

    Photos are decoded under moderation's caps (its configuration, not a setting read here).
    """
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
    )
