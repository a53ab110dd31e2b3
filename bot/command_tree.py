"""Lumi's command tree, and the claim that has every interaction answered once, by one process.

Discord may deliver one INTERACTION_CREATE twice: replayed after a resume, or to two sessions on one
shard during a hand-over. The second handler would redo the work and then fail to answer (400,
"Interaction has already been acknowledged"). So before a slash command, a context menu, a button click
or a modal submission is handled, its interaction is claimed (`<REDIS_KEY_PREFIX>:handled:interaction:<id>`,
`SET NX`, in memory in an embedded Lumi) by `first_delivery`; a process that finds the claim taken stands
back quietly. Commands are claimed in the tree's `interaction_check` (`HandledElsewhere` stops them),
buttons and modals in their own `interaction_check` (`cogs.shared`), which discord.py runs before their
callbacks. Redis unreachable: the interaction is handled anyway; refusing every click and command because
of a possible duplicate would be worse than a rare second answer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.interaction_errors import HandledElsewhere

if TYPE_CHECKING:
    from bot.client import LumiBot

__all__ = ["LumiTree", "first_delivery", "first_delivery_or_stand_back"]

log = logging.getLogger(__name__)


async def first_delivery(interaction: discord.Interaction[Any]) -> bool:
    """Claim the interaction; False when another delivery of it (in any process) claimed it first."""
    bot = interaction.client
    if not getattr(bot, "serving", False) or not getattr(bot, "has_runtime", False):
        return True
    return bool(
        await bot.runtime.rate_limits.claim_message("interaction", interaction.id, when_unreachable=True)
    )


async def first_delivery_or_stand_back(interaction: discord.Interaction[Any]) -> bool:
    """``first_delivery`` for components and modals, which have no error handler to stop quietly in:
    False (logged) tells discord.py to drop the second delivery."""
    if await first_delivery(interaction):
        return True
    log.info("interaction %s handled already (Discord delivered it twice)", interaction.id)
    return False


class LumiTree(app_commands.CommandTree["LumiBot"]):
    async def interaction_check(self, interaction: discord.Interaction[LumiBot]) -> bool:
        if not await first_delivery(interaction):
            raise HandledElsewhere(interaction.id)
        return True
