"""Initial schema: guild settings, moderation cases, image hashes, comments, generation jobs, stored assets.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00

Written out in full rather than derived from storage.models, so that later model changes never rewrite what
this revision created. Enum columns are plain VARCHARs (see storage.models).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column[int]:
    # INTEGER on SQLite because only an INTEGER PRIMARY KEY there is an auto-incrementing rowid alias.
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


def _utc(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "guild_settings",
        sa.Column("guild_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("mod_channel_id", sa.BigInteger(), nullable=True),
        sa.Column("moderation_enabled", sa.Boolean(), nullable=False),
        sa.Column("moderation_policy", sa.JSON(), nullable=False),
        sa.Column("exempt_channel_ids", sa.JSON(), nullable=False),
        sa.Column("exempt_role_ids", sa.JSON(), nullable=False),
        sa.Column("comment_channel_ids", sa.JSON(), nullable=False),
        sa.Column("comment_language", sa.String(16), nullable=False),
        sa.Column("comment_backend", sa.String(32), nullable=False),
        sa.Column("comment_cooldown_s", sa.Integer(), nullable=False),
        sa.Column("generation_daily_user_limit", sa.Integer(), nullable=True),
        sa.Column("generation_daily_guild_limit", sa.Integer(), nullable=True),
        _utc("created_at"),
        _utc("updated_at"),
    )

    op.create_table(
        "moderation_case",
        _id(),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("case_number", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence_key", sa.String(512), nullable=True),
        _utc("evidence_expires_at", nullable=True),
        sa.Column("image_phash", sa.String(64), nullable=True),
        sa.Column("alert_channel_id", sa.BigInteger(), nullable=True),
        sa.Column("alert_message_id", sa.BigInteger(), nullable=True),
        sa.Column("decided_by", sa.BigInteger(), nullable=True),
        _utc("decided_at", nullable=True),
        _utc("created_at"),
        _utc("updated_at"),
        sa.UniqueConstraint("guild_id", "case_number", name="uq_moderation_case_guild_number"),
    )
    op.create_index("ix_moderation_case_guild_author", "moderation_case", ["guild_id", "author_id"])
    op.create_index("ix_moderation_case_evidence_expires_at", "moderation_case", ["evidence_expires_at"])
    op.create_index("ix_moderation_case_image_phash", "moderation_case", ["image_phash"])

    op.create_table(
        "image_hash",
        _id(),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("phash", sa.String(64), nullable=False),
        sa.Column(
            "case_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("moderation_case.id", ondelete="SET NULL"),
            nullable=True,
        ),
        _utc("created_at"),
    )
    op.create_index("ix_image_hash_guild_id", "image_hash", ["guild_id"])
    op.create_index("ix_image_hash_phash", "image_hash", ["phash"])

    op.create_table(
        "comment_record",
        _id(),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        _utc("created_at"),
    )
    op.create_index("ix_comment_record_guild_author", "comment_record", ["guild_id", "author_id"])

    op.create_table(
        "generation_job",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("guild_id", sa.BigInteger(), nullable=True),
        sa.Column("channel_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("enhanced_prompt", sa.Text(), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("preview_task_id", sa.String(128), nullable=True),
        sa.Column("refine_task_id", sa.String(128), nullable=True),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("stage_detail", sa.String(256), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("interaction_token", sa.String(512), nullable=True),
        sa.Column("application_id", sa.BigInteger(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("channel_message_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "parent_job_id",
            sa.String(32),
            sa.ForeignKey("generation_job.id", ondelete="SET NULL"),
            nullable=True,
        ),
        _utc("created_at"),
        _utc("updated_at"),
        _utc("finished_at", nullable=True),
        sa.CheckConstraint("progress >= 0 AND progress <= 100", name="ck_generation_job_progress"),
    )
    op.create_index("ix_generation_job_state", "generation_job", ["state"])
    op.create_index("ix_generation_job_parent_job_id", "generation_job", ["parent_job_id"])
    op.create_index("ix_generation_job_user_created", "generation_job", ["user_id", "created_at"])
    op.create_index("ix_generation_job_guild_created", "generation_job", ["guild_id", "created_at"])

    op.create_table(
        "stored_asset",
        _id(),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("content_type", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("owner_kind", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=False),
        _utc("created_at"),
        _utc("expires_at", nullable=True),
    )
    op.create_index("ix_stored_asset_key", "stored_asset", ["key"], unique=True)
    op.create_index("ix_stored_asset_owner", "stored_asset", ["owner_kind", "owner_id"])
    op.create_index("ix_stored_asset_expires_at", "stored_asset", ["expires_at"])


def downgrade() -> None:
    op.drop_table("stored_asset")
    op.drop_table("generation_job")
    op.drop_table("comment_record")
    op.drop_table("image_hash")
    op.drop_table("moderation_case")
    op.drop_table("guild_settings")
