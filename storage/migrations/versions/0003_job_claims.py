"""Job claims: pgqueuer's queue tables (PostgreSQL only) and the job row's lease.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 00:00:00

In distributed mode 3D jobs are claimed through pgqueuer (`bot/services/generate3d/claims.py`); its
tables, types, trigger and notify function are created here from the pinned version's own install SQL,
so every schema change goes through Alembic. SQLite (one process) has no queue. Both backends get
`generation_job.lease_epoch` (raised by one at each claim; the holder's writes are fenced on it) and
`lease_owner` (which process holds the claim).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment
from sqlalchemy.util import await_only

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _run_script(sql: str) -> None:
    """Several statements (and a function body) at once: asyncpg's simple protocol takes them whole,
    on the migration's own connection and inside its transaction."""
    raw = op.get_bind().connection.driver_connection
    assert raw is not None, "the migration's connection is closed"
    await_only(raw.execute(sql))


def upgrade() -> None:
    with op.batch_alter_table("generation_job") as batch:
        batch.add_column(sa.Column("lease_epoch", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("lease_owner", sa.String(length=128), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        _run_script(QueryBuilderEnvironment().build_install_query(create_schema=False))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _run_script(QueryBuilderEnvironment().build_uninstall_query())
    with op.batch_alter_table("generation_job") as batch:
        batch.drop_column("lease_owner")
        batch.drop_column("lease_epoch")
