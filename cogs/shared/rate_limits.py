"""The per-user rate limit of a slash command, checked in the service every Lumi process shares.

Replaces discord.py's `app_commands.checks.cooldown`, whose window lives in one process: through
`bot.services.rate_limits` an embedded Lumi keeps it in memory as before, and the processes of a
distributed Lumi count in one Redis window. A user over the limit gets the same refusal as before
(`CommandOnCooldown`: "Slow down: try again in N s."); a limit that cannot be checked refuses the
command with a message saying so (see `bot.services.rate_limits` on failing closed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import discord
from discord import app_commands

from bot.client import LumiBot
from bot.interaction_errors import RefusedByCheck
from bot.services.rate_limits import COMMAND_LIMIT, LimitsUnavailable

T = TypeVar("T")

# What `CommandOnCooldown` reports as the limit (the error handler shows only the retry time).
_COOLDOWN = app_commands.Cooldown(COMMAND_LIMIT.amount, float(COMMAND_LIMIT.get_expiry()))


def per_user_rate_limit(command: str) -> Callable[[T], T]:
    """A check: ``command`` (its name in the shared window) may be used `COMMAND_LIMIT` times per user."""

    async def within_limit(interaction: discord.Interaction) -> bool:
        client = interaction.client
        if not isinstance(client, LumiBot):
            raise TypeError("the rate-limited commands run only in LumiBot")
        try:
            refusal = await client.runtime.rate_limits.hit_command(command, interaction.user.id)
        except LimitsUnavailable as unavailable:
            raise RefusedByCheck(unavailable.message) from None
        if refusal is not None:
            raise app_commands.CommandOnCooldown(_COOLDOWN, refusal.retry_after_s)
        return True

    return app_commands.check(within_limit)
