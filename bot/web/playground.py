"""The page at `/`: what is running, and how to connect Lumi to Discord when no token is set."""

from __future__ import annotations

import html
from dataclasses import dataclass
from importlib import resources
from string import Template

from aiohttp import web

from bot.services.status import format_duration
from bot.web.keys import PLAYGROUND, RUNTIME

_NO_TOKEN_BANNER = """
<section class="banner">
  <h2>Playground mode</h2>
  <p>No <code>DISCORD_TOKEN</code> is set, so Lumi is not connected to Discord. To connect it:</p>
  <ol>
    <li>Create an application and a bot at the Discord developer portal, enable the
        <b>Message Content</b> intent, and copy the bot token.</li>
    <li>Put <code>DISCORD_TOKEN=...</code> (and, while developing, <code>DISCORD_DEV_GUILD_ID=...</code>)
        in <code>.env</code>, then start Lumi again.</li>
  </ol>
</section>
"""


@dataclass(frozen=True)
class PlaygroundSection:
    """A block of HTML a feature adds to the page (a form, a demo)."""

    title: str
    body_html: str


SECTIONS = web.AppKey("playground_sections", list[PlaygroundSection])


def _template() -> Template:
    text = resources.files("bot.web").joinpath("templates/playground.html").read_text(encoding="utf-8")
    return Template(text)


async def index(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    report = await runtime.status.report()
    models = ", ".join(
        f"{html.escape(m.name)} ({'loaded' if m.loaded else 'not loaded'}, {html.escape(m.device)})"
        for m in report.models
    )
    sections = "".join(
        f"<section><h2>{html.escape(s.title)}</h2>{s.body_html}</section>"
        for s in request.app.get(SECTIONS, [])
    )
    page = _template().substitute(
        version=html.escape(report.version),
        uptime=format_duration(report.uptime_s),
        database=html.escape(report.database_backend) + ("" if report.database_ok else " (unreachable)"),
        banner=_NO_TOKEN_BANNER if request.app[PLAYGROUND] else "",
        models=models or "none registered yet",
        sections=sections,
    )
    return web.Response(text=page, content_type="text/html")
