"""3D generation: `/3d` commands, live progress messages and the Refine/Regenerate/Delete buttons."""

from __future__ import annotations

from bot.client import LumiBot
from cogs.generate3d.cog import Generate3D


async def setup(bot: LumiBot) -> None:
    await bot.add_cog(Generate3D(bot))
