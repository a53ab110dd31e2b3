"""Lumi's command tree: every slash command and context menu is answered once, by one process.

Discord may deliver one INTERACTION_CREATE twice: replayed after a resume, or to two sessions on one
shard during a hand-over. The second handler would redo the command's work and then fail to answer
(400, "Interaction has already been acknowledged"). So before a command runs, its interaction is claimed
(`<REDIS_KEY_PREFIX>:handled:interaction:<id>`, `SET NX`, in memory in an embedded Lumi); a process that
finds the claim taken stops quietly (`HandledElsewhere`). Redis unreachable: the command runs anyway;
refusing every command because of a possible duplicate would be worse than a rare second answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.interaction_errors import HandledElsewhere

if TYPE_CHECKING:
    from bot.client import LumiBot


class LumiTree(app_commands.CommandTree["LumiBot"]):
    async def interaction_check(self, interaction: discord.Interaction[LumiBot]) -> bool:
        bot = interaction.client
        if not bot.serving or not bot.has_runtime:
            return True
        limits = bot.runtime.rate_limits
        if not await limits.claim_message("interaction", interaction.id, when_unreachable=True):
            raise HandledElsewhere(interaction.id)
        return True
