"""The playground at `/`: moderation, photo comments and 3D generation tried in the browser, through the
same services the bot uses, on the embedded defaults and without Discord.

page serves `/` (the playground, or a status page beside a bot without ``PLAYGROUND_WITH_BOT``); the
API under ``/playground/api/`` is moderation_api, comments_api, generate3d_api and status_api, behind
the guards (same-origin POSTs, rate limit, JSON errors); uploads reads forms under the bot's limits and
previews makes the inline previews. `setup` puts it together.
"""

from __future__ import annotations

from bot.web.playground.routes import setup

__all__ = ["setup"]
