"""Plumbing shared by the persistent buttons under bot messages.

The buttons are ``DynamicItem``s rebuilt from their custom_id after a restart, so they hold no reference
to the cog that handles them: the click finds the cog by name at that moment.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import discord


async def handling_cog(
    interaction: discord.Interaction[Any], cog_name: str, *, unavailable: str
) -> Any | None:
    """The loaded cog called ``cog_name``; when it is not loaded, tell the clicker ``unavailable``.

    A feature that failed to load or was unloaded must still answer the click, or Discord shows
    "interaction failed" with no explanation.
    """
    get_cog = getattr(interaction.client, "get_cog", None)
    handler = get_cog(cog_name) if get_cog is not None else None
    if handler is None:
        await interaction.response.send_message(unavailable, ephemeral=True)
    return handler


def persistent_view(buttons: Iterable[discord.ui.Item[Any]]) -> discord.ui.View:
    """A view that never times out, so its buttons keep working for as long as the message exists."""
    view = discord.ui.View(timeout=None)
    for button in buttons:
        view.add_item(button)
    return view
