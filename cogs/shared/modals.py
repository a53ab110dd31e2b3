"""The base of Lumi's modals: a submission Discord delivers twice is handled once, by one process.

A modal's ``on_submit`` runs after its ``interaction_check``; ``ClaimedModal``'s claims the interaction
(``bot.command_tree``) and drops a second delivery, as the persistent buttons do for clicks. A subclass
that adds checks of its own calls ``super().interaction_check`` first.
"""

from __future__ import annotations

from typing import Any

import discord

from bot.command_tree import first_delivery_or_stand_back

__all__ = ["ClaimedModal"]


class ClaimedModal(discord.ui.Modal):
    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return await first_delivery_or_stand_back(interaction)
