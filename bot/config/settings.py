"""Lumi's settings: one object, read once from the environment and `.env`, passed down to constructors."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.config.blobs import BlobStoreFields
from bot.config.deployment import DeploymentSettings
from bot.config.serving import ServingSettings
from bot.deployment import deployment_problem
from inference.threads import default_threads
from storage.blob_stores import BlobStoreSettings, blob_store_problem
from storage.links import GENERATE_SECRET_HINT, MIN_SECRET_BYTES, LinkSecretError, load_or_create_secret


def _secret(value: SecretStr | None) -> str:
    return "" if value is None else value.get_secret_value()


class SettingsError(Exception):
    """A configuration problem described in one human line (which variable, what is expected)."""


class Settings(DeploymentSettings, ServingSettings, BlobStoreFields, BaseSettings):
    """Every variable is documented in `.env.example`; names are case-insensitive. The deployment's and
    the blob store's variables are declared in the classes it inherits (`bot.config.deployment`,
    `bot.config.blobs`)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # Deployment (mode, roles, shards, Redis): bot/config/deployment.py; the inference service:
    # bot/config/serving.py; blob store: bot/config/blobs.py.

    # Discord
    discord_token: SecretStr | None = None
    discord_dev_guild_id: int | None = None
    discord_guild_ready_timeout_s: float = Field(default=2.0, ge=0)
    # Discord's wait between two IDENTIFYs of one bucket (5 s); shorter only against a test server.
    discord_identify_window_s: float = Field(default=5.0, gt=0, le=60)

    # Storage
    data_dir: Path = Path("data")
    database_url: str = ""
    link_secret: SecretStr | None = None
    link_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)

    # Web server
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=0, le=65535)
    public_base_url: str = ""
    # Seconds a connection may take to send a whole request head, and stay idle between requests: slow or
    # silent clients are dropped instead of holding a connection open for an hour.
    web_header_timeout_s: float = Field(default=20.0, gt=0, le=3600)
    # Live progress streams (/jobs/<id>/events) open at once, in total and from one client address.
    web_sse_max_connections: int = Field(default=200, ge=1, le=100_000)
    web_sse_max_per_client: int = Field(default=10, ge=1, le=100_000)
    # The playground at `/` (try every feature in the browser): always on without DISCORD_TOKEN; beside
    # a connected bot only when this is true, since anyone reaching the web server could then use it.
    playground_with_bot: bool = False
    # Requests to the playground's API per browser address, in the `limits` notation ("30/minute").
    playground_rate_limit: str = "30/minute"

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
    # Distributed mode: a claimed 3D job whose worker sent no heartbeat for this long is taken over by
    # another worker (heartbeats go every half of it). Short values risk takeovers of stalled, live workers.
    job_heartbeat_timeout_s: float = Field(default=30.0, ge=1)
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

    @model_validator(mode="after")
    def _check_deployment(self) -> Settings:
        # One line for the whole deployment: an operator fixes everything that is missing in one go.
        problem = deployment_problem(
            mode=self.lumi_mode,
            roles=self.lumi_roles,
            shard_count=self.discord_shard_count,
            shard_ids=self.discord_shard_ids,
            database_url=self.database_url,
            redis_url=self.redis_url,
            blob_store_url=self.blob_store_url,
            shared_data_dir=self.lumi_shared_data_dir,
            has_link_secret=self.link_secret is not None,
        )
        if problem is not None:
            raise ValueError(problem)
        problem = blob_store_problem(self.blob_store_settings())
        if problem is not None:
            raise ValueError(problem)
        return self

    def blob_store_settings(self) -> BlobStoreSettings:
        return BlobStoreSettings(
            url=self.blob_store_url,
            data_dir=self.data_dir,
            azure_connection_string=_secret(self.azure_storage_connection_string),
            s3_endpoint_url=self.s3_endpoint_url,
            s3_region=self.s3_region,
            s3_access_key_id=self.s3_access_key_id,
            s3_secret_access_key=_secret(self.s3_secret_access_key),
        )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    # `.env.example` leaves these empty: an empty value means "not set".
    @field_validator(
        "discord_token",
        "link_secret",
        "comment_llm_api_key",
        "azure_storage_connection_string",
        "s3_secret_access_key",
        "discord_dev_guild_id",
        "discord_shard_count",
        "comment_model_dir",
        "moderation_openai_api_key",
        "meshy_api_key",
        "enhancer_api_key",
        "enhancer_local_model",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("link_secret")
    @classmethod
    def _check_link_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode("utf-8")) < MIN_SECRET_BYTES:
            size = len(value.get_secret_value().encode("utf-8"))
            raise ValueError(
                f"must be at least {MIN_SECRET_BYTES} bytes, got {size}; {GENERATE_SECRET_HINT} "
                "(or leave it empty to have one generated under DATA_DIR)"
            )
        return value

    @field_validator("inference_threads", mode="before")
    @classmethod
    def _blank_threads_is_default(cls, value: object) -> object:
        return default_threads() if isinstance(value, str) and not value.strip() else value

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

    @field_validator("playground_rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError('must be a rate such as "30/minute", "5/second" or "500/hour"') from None
        return value.strip()

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// (async drivers), "
                f"got {value.split('://', 1)[0]}://"
            )
        if value:
            try:
                make_url(value)
            except (ArgumentError, ValueError) as error:
                raise ValueError(f"is not a valid database URL ({error})") from None
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

    def ensure_data_dir(self) -> Path:
        """Create DATA_DIR if needed and check this user can write there; `SettingsError` says why not."""
        path = self.data_dir
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            problem = "is a file, not a folder"
        except NotADirectoryError:
            problem = "cannot be created: a folder above it is a file"
        except OSError as error:
            problem = f"cannot be created ({error.strerror})"
        else:
            if os.access(path, os.W_OK | os.X_OK):
                return path
            problem = "is not writable by this user"
        raise SettingsError(f"DATA_DIR: {path} {problem}; set DATA_DIR to a folder this user can write")

    def link_secret_value(self) -> str:
        """The secret for signed links; a random one is generated (and kept under data_dir) if unset."""
        if self.link_secret is not None:
            return self.link_secret.get_secret_value()
        self.ensure_data_dir()
        try:
            return load_or_create_secret(self.data_dir / "link_secret")
        except LinkSecretError as error:
            raise SettingsError(str(error)) from None


# Their values never appear in messages: secrets, and database URLs (which may carry a password).
_SECRET_FIELDS = frozenset(
    name
    for name, field in Settings.model_fields.items()
    if SecretStr in (field.annotation, *get_args(field.annotation))
)
_URL_PASSWORD = re.compile(r"(://[^/:@]*:)[^/]*@")


def masked_url(url: str) -> str:
    """`url` with its password replaced by ***, also when it does not parse as a URL.

    Up to the last '@' before the path: an unescaped '@' in a password must not leave its tail showing.
    """
    return _URL_PASSWORD.sub(r"\1***@", url, count=1)


def _shown_value(field: str, given: object) -> str:
    if isinstance(given, dict) or given is None:
        return ""
    if field in _SECRET_FIELDS:
        return " (value not shown)"
    if field == "database_url" and isinstance(given, str):
        return f" (got {masked_url(given)!r})"
    return f" (got {given!r})"


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = item.get("loc", ())
        if not loc:
            # A check across several variables (`_check_deployment`): its message names them itself.
            parts.append(str(item.get("msg", "invalid value")).removeprefix("Value error, "))
            continue
        name = ".".join(str(p) for p in loc) or "settings"
        shown = _shown_value(str(loc[0]) if loc else "", item.get("input"))
        parts.append(f"{name.upper()}: {item.get('msg', 'invalid value')}{shown}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning validation errors into a one-line `SettingsError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
