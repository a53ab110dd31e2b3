"""The page at `/`: the playground (every feature tried in the browser), or a status page beside a bot.

The page is static HTML; its scripts (``/static/playground/*.js``) ask the API for everything else. The
Content-Security-Policy lets only those scripts run, plus the import map three.js needs, by its hash.
"""

from __future__ import annotations

import html
from importlib import resources
from string import Template
from typing import Final

from aiohttp import web

from bot.services.status import format_duration
from bot.web.keys import PLAYGROUND, RUNTIME
from bot.web.playground.guards import content_security_policy

__all__ = ["IMPORT_MAP", "PAGE_POLICY", "PLAYGROUND_ON", "index"]

PLAYGROUND_ON = web.AppKey("playground_on", bool)

IMPORT_MAP: Final = (
    '{"imports": {"three": "/static/vendor/three/build/three.module.js", '
    '"three/addons/": "/static/vendor/three/addons/"}}'
)
PAGE_POLICY: Final = content_security_policy(IMPORT_MAP)

_NO_TOKEN_BANNER: Final = """
<section class="banner" id="no-token">
  <p><b>Playground mode.</b> No <code>DISCORD_TOKEN</code> is set, so Lumi is not connected to Discord:
  everything below runs on this machine, with the same services the bot uses, and nothing you upload is
  kept. To connect Lumi to a server, create a bot at the Discord developer portal (enable the
  <b>Message Content</b> intent), put <code>DISCORD_TOKEN=...</code> in <code>.env</code> and start
  Lumi again.</p>
</section>
"""
_WITH_BOT_BANNER: Final = """
<section class="banner" id="with-bot">
  <p>Lumi is connected to Discord; this playground runs beside it (<code>PLAYGROUND_WITH_BOT=true</code>)
  with the same models and limits. Nothing you upload is kept.</p>
</section>
"""


def _template(name: str) -> Template:
    text = resources.files("bot.web").joinpath(f"templates/{name}").read_text(encoding="utf-8")
    return Template(text)


async def index(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    report = await runtime.status.report()
    values = {
        "version": html.escape(report.version),
        "uptime": format_duration(report.uptime_s),
        "database": html.escape(report.database_backend) + ("" if report.database_ok else " (unreachable)"),
    }
    if request.app[PLAYGROUND_ON]:
        banner = _NO_TOKEN_BANNER if request.app[PLAYGROUND] else _WITH_BOT_BANNER
        page = _template("playground.html").substitute(values, banner=banner, importmap=IMPORT_MAP)
    else:
        models = ", ".join(
            f"{html.escape(m.name)} ({'loaded' if m.loaded else 'not loaded'}, {html.escape(m.device)})"
            for m in report.models
        )
        page = _template("status.html").substitute(values, models=models or "none registered yet")
    return web.Response(
        text=page,
        content_type="text/html",
        headers={
            "Content-Security-Policy": PAGE_POLICY,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
