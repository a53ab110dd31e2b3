"""How this process takes part in a Lumi deployment: the mode, its roles and its gateway shard plan.

`LUMI_MODE=embedded` (the default) is one process doing everything on SQLite or PostgreSQL with local
files, exactly as Lumi always ran. `LUMI_MODE=distributed` runs the same code as several processes on one
PostgreSQL, each with some of the roles below; it needs what those processes must share (see
`distributed_problems`). The checks here are pure functions of the settings' values, called by
`bot.config.Settings`' validators, so a bad combination stops start-up with one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

Mode = Literal["embedded", "distributed"]
Role = Literal["gateway", "worker", "web"]

# gateway: connects to Discord and answers events and commands; worker: resumes 3D jobs and runs the
# clean-up loops; web: listens on WEB_PORT (downloads, viewer, progress, health, metrics).
ALL_ROLES: tuple[Role, ...] = get_args(Role)


def parse_roles(value: object) -> object:
    """`gateway,worker` → ["gateway", "worker"]; empty → every role. Unknown names are left to the checks."""
    if isinstance(value, str):
        names = [name.strip().lower() for name in value.split(",") if name.strip()]
        return names or list(ALL_ROLES)
    return value


def check_roles(roles: Sequence[str]) -> list[Role]:
    """The roles in their canonical order; `ValueError` for an unknown, repeated or empty list."""
    unknown = [name for name in roles if name not in ALL_ROLES]
    if unknown:
        raise ValueError(
            f"unknown role {unknown[0]!r}; use a comma-separated subset of {', '.join(ALL_ROLES)}"
        )
    if len(set(roles)) != len(roles):
        raise ValueError("names a role twice")
    if not roles:
        raise ValueError(f"must name at least one of {', '.join(ALL_ROLES)}")
    return [role for role in ALL_ROLES if role in roles]


def parse_shard_ids(value: object) -> object:
    """`0,1` → [0, 1]; empty → [] (every shard of the plan). Non-numbers are left to pydantic's message."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def shard_plan_problem(shard_count: int | None, shard_ids: Sequence[int]) -> str | None:
    """Why DISCORD_SHARD_COUNT / DISCORD_SHARD_IDS do not make a plan, or None when they do."""
    if shard_count is None:
        return (
            "DISCORD_SHARD_IDS: needs DISCORD_SHARD_COUNT (the total number of shards)" if shard_ids else None
        )
    outside = [shard for shard in shard_ids if not 0 <= shard < shard_count]
    if outside:
        return (
            f"DISCORD_SHARD_IDS: shard {outside[0]} is outside 0..{shard_count - 1} "
            f"(DISCORD_SHARD_COUNT={shard_count})"
        )
    repeated = sorted({shard for shard in shard_ids if list(shard_ids).count(shard) > 1})
    if repeated:
        return f"DISCORD_SHARD_IDS: shard {repeated[0]} is listed twice"
    return None


def distributed_problems(
    *,
    database_url: str,
    redis_url: str,
    blob_store_url: str,
    shared_data_dir: bool,
    has_link_secret: bool,
) -> list[str]:
    """What distributed mode lacks, one short phrase each (empty: everything it needs is set).

    Every process must see the same rows (PostgreSQL), the same limits (Redis), the same files and the
    same link secret: a link signed by one process must open on any other.
    """
    missing: list[str] = []
    if not database_url.startswith("postgresql+asyncpg://"):
        missing.append("DATABASE_URL (postgresql+asyncpg://...; SQLite cannot be shared by processes)")
    if not redis_url.strip():
        missing.append("REDIS_URL (redis://host:6379/0)")
    if not blob_store_url.strip() and not shared_data_dir:
        missing.append(
            "BLOB_STORE_URL (azure://<container> or s3://<bucket>; or LUMI_SHARED_DATA_DIR=true when "
            "DATA_DIR is storage every process shares)"
        )
    if not has_link_secret:
        missing.append("LINK_SECRET (the same secret in every process)")
    return missing


def deployment_problem(
    *,
    mode: Mode,
    roles: Sequence[Role],
    shard_count: int | None,
    shard_ids: Sequence[int],
    database_url: str,
    redis_url: str,
    blob_store_url: str,
    shared_data_dir: bool,
    has_link_secret: bool,
) -> str | None:
    """Everything wrong with the deployment settings taken together, in one line; None when they fit."""
    problem = shard_plan_problem(shard_count, shard_ids)
    if problem is not None:
        return problem
    if mode == "embedded":
        if list(roles) != list(ALL_ROLES):
            return (
                f"LUMI_ROLES={','.join(roles)} needs LUMI_MODE=distributed (an embedded Lumi runs every role)"
            )
        return None
    missing = distributed_problems(
        database_url=database_url,
        redis_url=redis_url,
        blob_store_url=blob_store_url,
        shared_data_dir=shared_data_dir,
        has_link_secret=has_link_secret,
    )
    return "LUMI_MODE=distributed needs " + "; ".join(missing) if missing else None
