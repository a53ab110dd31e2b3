"""Build the 3D generation service from Settings (the only place that reads its settings)."""

from __future__ import annotations

from bot.config import Settings
from bot.services.generate3d.config import GenerationConfig
from bot.services.generate3d.prompts import PromptChecker, PromptEnhancer, build_prompt_enhancer
from bot.services.generate3d.service import GenerationService
from inference.remote.meshy import MeshyClient
from storage.blobs import BlobStore
from storage.db import Database


def generation_config(settings: Settings) -> GenerationConfig:
    """The 3D block of `Settings`, read once: the service, its parts and the 3D cog get it from here."""
    return GenerationConfig(
        daily_user_limit=settings.generation_daily_user_limit,
        daily_guild_limit=settings.generation_daily_guild_limit,
        user_concurrent_limit=settings.generation_user_concurrent_limit,
        max_concurrent_jobs=settings.generation_max_concurrent_jobs,
        queue_retry_s=settings.generation_queue_retry_s,
        task_deadline_s=settings.generation_task_timeout_s,
        max_asset_bytes=int(settings.generation_max_asset_mb * 1024 * 1024),
        ai_model=settings.meshy_ai_model,
        keep_days=settings.generation_keep_days,
        cleanup_interval_s=settings.generation_cleanup_interval_s,
        progress_interval_s=settings.generation_progress_interval_s,
        interaction_ttl_s=settings.generation_interaction_ttl_s,
        # Distributed processes claim jobs through PostgreSQL; an embedded Lumi runs its own.
        claimed_jobs=settings.lumi_mode == "distributed",
        heartbeat_timeout_s=settings.job_heartbeat_timeout_s,
    )


def prompt_enhancer(settings: Settings) -> PromptEnhancer:
    return build_prompt_enhancer(
        choice=settings.enhancer_backend,
        chat_base_url=settings.enhancer_base_url,
        chat_api_key=settings.enhancer_api_key.get_secret_value() if settings.enhancer_api_key else None,
        chat_model=settings.enhancer_model,
        local_model_path=settings.enhancer_local_model,
        device=settings.inference_device,
        language=settings.enhancer_language,
        timeout_s=settings.enhancer_timeout_s,
    )


def prompt_checker(settings: Settings) -> PromptChecker:
    return PromptChecker(
        extra_blocked_words=settings.prompt_blocked_words,
        profanity_threshold=settings.prompt_profanity_threshold,
    )


def meshy_client(settings: Settings) -> MeshyClient | None:
    if settings.meshy_api_key is None:
        return None
    return MeshyClient(
        settings.meshy_api_key.get_secret_value(),
        base_url=settings.meshy_base_url,
        timeout=settings.meshy_request_timeout_s,
    )


def build_generation_service(settings: Settings, database: Database, blobs: BlobStore) -> GenerationService:
    """The service; without MESHY_API_KEY it exists but refuses jobs with an explanation."""
    return GenerationService(
        database=database,
        blobs=blobs,
        meshy=meshy_client(settings),
        enhancer=prompt_enhancer(settings),
        checker=prompt_checker(settings),
        config=generation_config(settings),
    )
