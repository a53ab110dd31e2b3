"""One moderation case per Discord message: a partial unique index on (guild_id, message_id).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 00:00:00

Discord may deliver one MESSAGE_CREATE twice (after a resume, or to two sessions on one shard during a
hand-over); with the index, the second insert of a case for that message fails and the recorder treats
the post as handled. Cases whose message was deleted with its author's data have no message id and
are not constrained. Databases that already hold several cases for one message keep the oldest linked
to it; the later ones lose their message id (they are the duplicates), so the index can be built.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_moderation_case_guild_message"
HAS_MESSAGE = sa.text("message_id IS NOT NULL")


def upgrade() -> None:
    op.execute(
        """
        UPDATE moderation_case SET message_id = NULL
        WHERE message_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM moderation_case AS older
            WHERE older.guild_id = moderation_case.guild_id
              AND older.message_id = moderation_case.message_id
              AND older.id < moderation_case.id
        )
        """
    )
    op.create_index(
        INDEX,
        "moderation_case",
        ["guild_id", "message_id"],
        unique=True,
        sqlite_where=HAS_MESSAGE,
        postgresql_where=HAS_MESSAGE,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="moderation_case")
