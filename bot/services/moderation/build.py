"""Build the moderation service from Settings: the only place that reads the Moderation block of them."""

from __future__ import annotations

from datetime import timedelta

from bot.config import Settings
from bot.services.image_fetch import ImageFetcher
from bot.services.moderation.check_results import ExtraDetector
from bot.services.moderation.checker import ImageChecker
from bot.services.moderation.classifiers import ClassifierDetector, classifier_catalog_for
from bot.services.moderation.config import ModerationConfig
from bot.services.moderation.openai_detector import OpenAIImageDetector
from bot.services.moderation.service import ModerationService
from inference.registry import ModelRegistry
from inference.remote.moderation_api import OpenAIModerationClient
from storage.blobs import BlobStore
from storage.db import Database

__all__ = ["build_moderation_service", "moderation_config"]


def moderation_config(settings: Settings) -> ModerationConfig:
    """Moderation's settings, read once; everything else takes them from the object this returns."""
    api_key = settings.moderation_openai_api_key
    return ModerationConfig(
        fetch_hosts=tuple(settings.moderation_fetch_hosts),
        max_image_bytes=int(settings.moderation_max_image_mb * 1024 * 1024),
        fetch_timeout_s=settings.moderation_fetch_timeout_s,
        max_images_per_post=settings.moderation_max_images_per_message,
        evidence_retention=timedelta(days=settings.moderation_evidence_retention_days),
        cleanup_interval_s=settings.moderation_cleanup_interval_s,
        openai_api_key=api_key.get_secret_value() if api_key is not None else None,
        openai_base_url=settings.moderation_openai_base_url,
        model_threads=settings.inference_threads,
        data_dir=settings.data_dir,
    )


def build_moderation_service(
    settings: Settings, database: Database, blobs: BlobStore, registry: ModelRegistry
) -> ModerationService:
    """The service the bot runs: the local models, the optional OpenAI second opinion and the custom
    classifiers, downloading from the configured hosts only."""
    config = moderation_config(settings)
    extra: list[ExtraDetector] = []
    if config.openai_api_key is not None:
        client = OpenAIModerationClient(config.openai_api_key, base_url=config.openai_base_url or None)
        extra.append(OpenAIImageDetector(client))
    classifiers = classifier_catalog_for(settings) if config.data_dir is not None else None
    if classifiers is not None:
        extra.append(ClassifierDetector(classifiers, registry))
    return ModerationService(
        database=database,
        blobs=blobs,
        checker=ImageChecker(
            registry,
            limits=config.image_limits,
            extra_detectors=extra,
            model_threads=config.model_threads,
        ),
        fetcher=ImageFetcher(
            allowed_hosts=config.fetch_hosts,
            max_bytes=config.max_image_bytes,
            timeout_s=config.fetch_timeout_s,
        ),
        config=config,
        classifiers=classifiers,
    )
