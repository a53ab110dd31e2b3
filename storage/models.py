"""SQLModel tables for guild settings, moderation cases, photo comments, 3D generation jobs and stored files.

Conventions shared by every table:
- Discord snowflakes are BIGINT: they overflow a 32-bit INTEGER.
- Datetimes are timezone-aware UTC in Python. SQLite has no timezone type, so `UTCDateTime` stores UTC and
  attaches `UTC` when reading back; naive datetimes are refused instead of being guessed at.
- Enums are stored as their string values (VARCHAR, no native PostgreSQL ENUM) so adding a member needs no
  `ALTER TYPE` migration and the SQLite and PostgreSQL schemas stay identical.
- JSON columns hold plain dicts/lists. Assign a new value to change one: in-place mutation is not tracked.
- The schema itself comes from Alembic migrations (`storage/migrations`), never from `create_all`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

# Replaces a user id once that user asked for their data to be deleted; Discord never issues snowflake 0.
ANONYMOUS_USER_ID = 0


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """`DateTime(timezone=True)` that always hands back aware UTC datetimes, on SQLite too."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime (UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _enum_values(enum_cls: type[StrEnum]) -> list[str]:
    return [member.value for member in enum_cls]


def _string_enum(enum_cls: type[StrEnum], length: int) -> sa.Enum:
    # No CHECK constraint either: old code reading a row written by newer code should still load it.
    return sa.Enum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=_enum_values,
        validate_strings=True,
    )


class CaseStatus(StrEnum):
    OPEN = "open"
    AUTO_ACTIONED = "auto_actioned"
    CONFIRMED = "confirmed"
    RESTORED = "restored"
    DISMISSED = "dismissed"


class CaseAction(StrEnum):
    NONE = "none"
    DELETED = "deleted"
    HELD = "held"
    ALERTED = "alerted"
    TIMED_OUT = "timed_out"


class JobState(StrEnum):
    QUEUED = "queued"
    ENHANCING = "enhancing"
    PREVIEW = "preview"
    REFINING = "refining"
    DOWNLOADING = "downloading"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_JOB_STATES


TERMINAL_JOB_STATES: frozenset[JobState] = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELED})


class AssetOwner(StrEnum):
    """What a stored file belongs to; `owner_kind` is a plain string column so new kinds need no migration."""

    JOB = "job"
    CASE = "case"


class GuildSettings(SQLModel, table=True):
    """Per-guild configuration; a row is created with these defaults the first time a guild is seen."""

    __tablename__ = "guild_settings"

    guild_id: int = Field(primary_key=True, sa_type=sa.BigInteger, sa_column_kwargs={"autoincrement": False})
    mod_channel_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    moderation_enabled: bool = True
    # Empty means "service defaults"; the moderation service owns the keys (thresholds, actions).
    moderation_policy: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    exempt_channel_ids: list[int] = Field(default_factory=list, sa_type=sa.JSON)
    exempt_role_ids: list[int] = Field(default_factory=list, sa_type=sa.JSON)
    comment_channel_ids: list[int] = Field(default_factory=list, sa_type=sa.JSON)
    comment_language: str = Field(default="ko", sa_type=sa.String(16))
    comment_backend: str = Field(default="local", sa_type=sa.String(32))
    comment_cooldown_s: int = 30
    # None means "use the bot-wide limit from Settings".
    generation_daily_user_limit: int | None = None
    generation_daily_guild_limit: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ModerationCase(SQLModel, table=True):
    """One moderation event, numbered per guild (case #1, #2, ...) like a mod-log."""

    __tablename__ = "moderation_case"
    __table_args__ = (
        sa.UniqueConstraint("guild_id", "case_number", name="uq_moderation_case_guild_number"),
        sa.Index("ix_moderation_case_guild_author", "guild_id", "author_id"),
        # One case per Discord message, even when Discord delivers the message twice (migration 0002).
        sa.Index(
            "uq_moderation_case_guild_message",
            "guild_id",
            "message_id",
            unique=True,
            sqlite_where=sa.text("message_id IS NOT NULL"),
            postgresql_where=sa.text("message_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(
        default=None, primary_key=True, sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    )
    guild_id: int = Field(sa_type=sa.BigInteger)
    case_number: int
    channel_id: int = Field(sa_type=sa.BigInteger)
    # Nullable: cleared when the author asks for their data to be deleted.
    message_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    author_id: int = Field(sa_type=sa.BigInteger)
    status: CaseStatus = Field(default=CaseStatus.OPEN, sa_type=_string_enum(CaseStatus, 32))
    action: CaseAction = Field(default=CaseAction.NONE, sa_type=_string_enum(CaseAction, 32))
    scores: dict[str, float] = Field(default_factory=dict, sa_type=sa.JSON)
    labels: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    reason: str = Field(default="", sa_type=sa.Text)
    evidence_key: str | None = Field(default=None, sa_type=sa.String(512))
    evidence_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    image_phash: str | None = Field(default=None, sa_type=sa.String(64), index=True)
    alert_channel_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    alert_message_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    decided_by: int | None = Field(default=None, sa_type=sa.BigInteger)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ImageHash(SQLModel, table=True):
    """Perceptual hash of an image a moderator confirmed, so re-uploads of it are caught without a model."""

    __tablename__ = "image_hash"

    id: int | None = Field(
        default=None, primary_key=True, sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    )
    guild_id: int = Field(sa_type=sa.BigInteger, index=True)
    phash: str = Field(sa_type=sa.String(64), index=True)
    case_id: int | None = Field(
        default=None,
        sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        foreign_key="moderation_case.id",
        ondelete="SET NULL",
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CommentRecord(SQLModel, table=True):
    """An SNS-style comment Lumi posted under a photo, kept for quality review and latency statistics."""

    __tablename__ = "comment_record"
    __table_args__ = (sa.Index("ix_comment_record_guild_author", "guild_id", "author_id"),)

    id: int | None = Field(
        default=None, primary_key=True, sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    )
    guild_id: int = Field(sa_type=sa.BigInteger)
    channel_id: int = Field(sa_type=sa.BigInteger)
    message_id: int = Field(sa_type=sa.BigInteger)
    author_id: int = Field(sa_type=sa.BigInteger)
    labels: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    backend: str = Field(sa_type=sa.String(32))
    language: str = Field(sa_type=sa.String(16))
    comment: str = Field(sa_type=sa.Text)
    latency_ms: float
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class GenerationJob(SQLModel, table=True):
    """A text-to-3D request, from prompt enhancement through Meshy preview and refine to downloaded files."""

    __tablename__ = "generation_job"
    __table_args__ = (
        sa.CheckConstraint("progress >= 0 AND progress <= 100", name="ck_generation_job_progress"),
        sa.Index("ix_generation_job_user_created", "user_id", "created_at"),
        sa.Index("ix_generation_job_guild_created", "guild_id", "created_at"),
    )

    id: str = Field(default_factory=new_job_id, primary_key=True, sa_type=sa.String(32))
    guild_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    # Nullable so jobs started outside Discord (command line, web playground) fit too.
    channel_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    user_id: int = Field(sa_type=sa.BigInteger)
    prompt: str = Field(sa_type=sa.Text)
    enhanced_prompt: str | None = Field(default=None, sa_type=sa.Text)
    options: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    state: JobState = Field(default=JobState.QUEUED, sa_type=_string_enum(JobState, 32), index=True)
    preview_task_id: str | None = Field(default=None, sa_type=sa.String(128))
    refine_task_id: str | None = Field(default=None, sa_type=sa.String(128))
    progress: int = 0
    stage_detail: str = Field(default="", sa_type=sa.String(256))
    error: str | None = Field(default=None, sa_type=sa.Text)
    # Interaction tokens stay valid for 15 minutes; kept so a restarted bot can still edit the reply.
    interaction_token: str | None = Field(default=None, sa_type=sa.String(512))
    application_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    message_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    channel_message_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    parent_job_id: str | None = Field(
        default=None,
        sa_type=sa.String(32),
        foreign_key="generation_job.id",
        ondelete="SET NULL",
        index=True,
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Which process runs the job (distributed mode): each claim adds one to the epoch, and the holder's
    # writes match only its own epoch, so a worker whose claim moved on can change nothing.
    lease_epoch: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    lease_owner: str | None = Field(default=None, sa_type=sa.String(128))


class GenerationJobPublic(SQLModel):
    """What the web progress endpoints may show: everything but the Discord interaction credentials."""

    id: str
    state: JobState
    progress: int
    stage_detail: str
    prompt: str
    enhanced_prompt: str | None
    error: str | None
    parent_job_id: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class StoredAsset(SQLModel, table=True):
    """A file in the blob store and what owns it (a job's model files, a case's evidence image)."""

    __tablename__ = "stored_asset"
    __table_args__ = (sa.Index("ix_stored_asset_owner", "owner_kind", "owner_id"),)

    id: int | None = Field(
        default=None, primary_key=True, sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    )
    key: str = Field(sa_type=sa.String(512), unique=True, index=True)
    content_type: str = Field(sa_type=sa.String(128))
    size: int = Field(sa_type=sa.BigInteger)
    sha256: str = Field(sa_type=sa.String(64))
    filename: str = Field(sa_type=sa.String(255))
    owner_kind: str = Field(sa_type=sa.String(16))
    owner_id: str = Field(sa_type=sa.String(64))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)


metadata = SQLModel.metadata
