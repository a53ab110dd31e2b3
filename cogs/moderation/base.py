"""What the parts of the moderation cog share: the bot, the moderation service and the enforcer."""

from __future__ import annotations

from discord.ext import commands

from bot.client import LumiBot
from bot.services.moderation import ModerationService
from cogs.moderation.enforcement import Enforcer


class ModerationBase(commands.Cog):
    """Declares the state that `Moderation.__init__` sets up, for the mixins that use it.

    A cog itself because discord.py types command callbacks as methods of a cog; the one class that
    the bot loads is `Moderation`, which combines the mixins.
    """

    bot: LumiBot
    service: ModerationService
    enforcer: Enforcer
