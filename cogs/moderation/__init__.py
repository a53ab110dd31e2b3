"""Image moderation: checks every image posted in a server and alerts the moderators."""

from __future__ import annotations

from bot.client import LumiBot
from cogs.moderation.cog import Moderation


async def setup(bot: LumiBot) -> None:
    await bot.add_cog(Moderation(bot))
