"""The settings of how a process takes part in a deployment: mode, roles, gateway shards and Redis.

A part of `bot.config.Settings` (which inherits it), kept apart so the checks they feed
(`bot.deployment`) and the variables they read sit together; the names, environment variables and
defaults are `Settings`' own. The check across groups (what distributed mode needs: PostgreSQL, a shared
blob store, LINK_SECRET) stays in `Settings`, which sees every group.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

from bot.deployment import ALL_ROLES, Mode, Role, check_roles, parse_roles, parse_shard_ids

__all__ = ["DeploymentSettings"]


class DeploymentSettings(BaseSettings):
    # Deployment (bot/deployment.py): one process doing everything, or several sharing PostgreSQL and Redis.
    lumi_mode: Mode = "embedded"
    lumi_roles: Annotated[list[Role], NoDecode] = Field(default_factory=lambda: list(ALL_ROLES))
    redis_url: str = ""
    # Every Redis key Lumi writes starts with this (deployments, or test runs, sharing one Redis differ).
    redis_key_prefix: str = Field(default="lumi", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    # The operator's word that DATA_DIR is storage every process shares (a network or cluster file system).
    lumi_shared_data_dir: bool = False
    # A gateway's slice of the shards: the total, and the ids this process runs (empty: all of them).
    discord_shard_count: int | None = Field(default=None, ge=1, le=100_000)
    discord_shard_ids: Annotated[list[Annotated[int, Field(ge=0)]], NoDecode] = Field(default_factory=list)

    @field_validator("lumi_mode", mode="before")
    @classmethod
    def _lower_mode(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("lumi_roles", mode="before")
    @classmethod
    def _split_roles(cls, value: object) -> object:
        return parse_roles(value)

    @field_validator("lumi_roles")
    @classmethod
    def _check_roles(cls, value: list[Role]) -> list[Role]:
        return check_roles(value)

    @field_validator("discord_shard_ids", mode="before")
    @classmethod
    def _split_shard_ids(cls, value: object) -> object:
        return parse_shard_ids(value)

    def has_role(self, role: Role) -> bool:
        return role in self.lumi_roles

    @property
    def shard_ids(self) -> list[int]:
        """The shards this gateway runs: DISCORD_SHARD_IDS, else every shard of DISCORD_SHARD_COUNT."""
        if self.discord_shard_count is None:
            return []
        return list(self.discord_shard_ids) or list(range(self.discord_shard_count))
