"""Lumi's settings: one object, read once from the environment and `.env`, passed down to constructors."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from inference.threads import default_threads


class SettingsError(Exception):
    """A configuration problem described in one human line (which variable, what is expected)."""


class Settings(BaseSettings):
    """Every variable is documented in `.env.example`; names are case-insensitive."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # Discord
    discord_token: SecretStr | None = None
    discord_dev_guild_id: int | None = None
    discord_guild_ready_timeout_s: float = Field(default=2.0, ge=0)

    # Storage
    data_dir: Path = Path("data")
    database_url: str = ""
    link_secret: SecretStr | None = None
    link_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)

    # Web server
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=0, le=65535)
    public_base_url: str = ""

    # Inference
    inference_device: Literal["auto", "cpu", "cuda"] = "auto"
    # CPU threads of each model framework's pools (torch, TensorFlow, onnxruntime). Half the usable
    # cores by default: two models usually run at once beside the event loop, and more threads than
    # cores is slow (on 2 busy cores, 2 torch threads took 7-10x longer per small op than 1).
    inference_threads: int = Field(default_factory=default_threads, ge=1, le=1024)

    # Moderation
    moderation_fetch_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["cdn.discordapp.com", "media.discordapp.net"]
    )
    moderation_max_image_mb: float = Field(default=25.0, gt=0, le=500)
    moderation_fetch_timeout_s: float = Field(default=15.0, gt=0)
    moderation_max_images_per_message: int = Field(default=10, ge=1, le=50)
    moderation_evidence_retention_days: float = Field(default=7.0, gt=0)
    moderation_cleanup_interval_s: float = Field(default=3600.0, ge=10)
    # A second opinion from OpenAI's moderation endpoint (any OpenAI-compatible URL); off without a key.
    moderation_openai_api_key: SecretStr | None = None
    moderation_openai_base_url: str = ""

    # 3D generation
    meshy_api_key: SecretStr | None = None
    meshy_base_url: str = "https://api.meshy.ai"
    meshy_ai_model: Literal["latest", "meshy-4", "meshy-5", "meshy-6"] = "latest"
    # Seconds one Meshy API request may take (a timeout is retried once); downloads have their own limit.
    meshy_request_timeout_s: float = Field(default=10.0, gt=0, le=300)
    generation_daily_user_limit: int = Field(default=10, ge=0)
    generation_daily_guild_limit: int = Field(default=100, ge=0)
    generation_user_concurrent_limit: int = Field(default=2, ge=1)
    generation_max_concurrent_jobs: int = Field(default=8, ge=1, le=1000)
    generation_queue_retry_s: float = Field(default=15.0, gt=0)
    generation_task_timeout_s: float = Field(default=3600.0, ge=10)
    generation_max_asset_mb: float = Field(default=200.0, gt=0)
    generation_progress_interval_s: float = Field(default=2.0, ge=0.05)
    generation_interaction_ttl_s: float = Field(default=14 * 60.0, ge=1, le=15 * 60.0)
    # Days the generated files are kept (0: forever); the jobs stay listed, marked as expired.
    generation_keep_days: int = Field(default=30, ge=0)
    generation_cleanup_interval_s: float = Field(default=3600.0, ge=10)
    prompt_blocked_words: Annotated[list[str], NoDecode] = Field(default_factory=list)
    prompt_profanity_threshold: float = Field(default=0.97, gt=0, le=1)
    enhancer_backend: Literal["auto", "openai", "local", "keywords"] = "auto"
    enhancer_base_url: str = ""
    enhancer_api_key: SecretStr | None = None
    enhancer_model: str = ""
    enhancer_local_model: Path | None = None
    enhancer_language: Literal["auto", "en"] = "auto"
    enhancer_timeout_s: float = Field(default=20.0, gt=0)

    # Comments
    # Empty: the comment model committed with Lumi (inference/weights/commenter).
    comment_model_dir: Path | None = None
    comment_face_detector: Literal["auto", "mtcnn", "haar"] = "auto"
    # A bare file name is kept under DATA_DIR/models (downloaded there on first use when allowed).
    comment_objects_weights: str = "yolov8m-oiv7.pt"
    comment_objects_download: bool = True
    comment_object_min_score: float = Field(default=0.35, ge=0, le=1)
    comment_emotion_min_score: float = Field(default=0.4, ge=0, le=1)
    comment_max_labels: int = Field(default=5, ge=1, le=8)
    comment_max_images_per_message: int = Field(default=4, ge=1, le=10)
    # Empty: the "llm" backend is off and guilds that chose it get Lumi's own model.
    comment_llm_base_url: str = ""
    comment_llm_api_key: SecretStr | None = None
    comment_llm_model: str = "gpt-4o-mini"
    comment_llm_timeout_s: float = Field(default=15.0, gt=0, le=300)
    comment_llm_max_retries: int = Field(default=2, ge=0, le=10)

    # Shutdown: seconds the work in flight (photo comments, moderation checks) gets to finish on SIGTERM
    # before the models and the Discord session close; what still runs then is stopped.
    shutdown_drain_s: float = Field(default=30.0, ge=0, le=3600)

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("discord_token", "link_secret", "comment_llm_api_key", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("discord_dev_guild_id", "comment_model_dir", mode="before")
    @classmethod
    def _blank_guild_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("inference_threads", mode="before")
    @classmethod
    def _blank_threads_is_default(cls, value: object) -> object:
        return default_threads() if isinstance(value, str) and not value.strip() else value

    @field_validator("moderation_openai_api_key", mode="before")
    @classmethod
    def _blank_key_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("meshy_api_key", "enhancer_api_key", "enhancer_local_model", mode="before")
    @classmethod
    def _blank_generation_value_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("prompt_blocked_words", mode="before")
    @classmethod
    def _split_words(cls, value: object) -> object:
        if isinstance(value, str):
            return [word.strip() for word in value.split(",") if word.strip()]
        return value

    @field_validator("moderation_fetch_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        # Comma-separated in the environment; a list when passed in code.
        if isinstance(value, str):
            return [host.strip().lower() for host in value.split(",") if host.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// (async drivers), "
                f"got {value.split('://', 1)[0]}://"
            )
        return value

    @property
    def has_discord_token(self) -> bool:
        return self.discord_token is not None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'lumi.db').resolve()}"

    @property
    def resolved_public_base_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = "127.0.0.1" if self.web_host in ("0.0.0.0", "::") else self.web_host
        return f"http://{host}:{self.web_port}"

    def link_secret_value(self) -> str:
        """The secret for signed links; a random one is generated (and kept under data_dir) if unset."""
        if self.link_secret is not None:
            return self.link_secret.get_secret_value()
        path = self.data_dir / "link_secret"
        if path.exists():
            return path.read_text(encoding="utf-8").strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        path.write_text(value, encoding="utf-8")
        path.chmod(0o600)
        return value


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        name = ".".join(str(p) for p in item.get("loc", ())) or "settings"
        given = item.get("input")
        shown = "" if isinstance(given, dict) or given is None else f" (got {given!r})"
        parts.append(f"{name.upper()}: {item.get('msg', 'invalid value')}{shown}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning validation errors into a one-line `SettingsError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
