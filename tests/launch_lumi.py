"""Run `lumi run` in a child process against the local Discord server (tests only).

A subprocess cannot be redirected by setting discord.py's class attributes from the test, so this
launcher does it itself from LUMI_TEST_DISCORD_URL (e.g. http://127.0.0.1:PORT) before handing over to the
real command line. Production code never reads that variable.

    LUMI_TEST_DISCORD_URL=http://127.0.0.1:5555 DISCORD_TOKEN=test-token python tests/launch_lumi.py run
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import discord
import yarl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.cli import main


def redirect(base_url: str) -> None:
    base_url = base_url.rstrip("/")
    discord.http.Route.BASE = f"{base_url}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
        base_url.replace("http", "ws", 1) + "/gateway"
    )
    discord.asset.Asset.BASE = f"{base_url}/cdn"


if __name__ == "__main__":
    redirect(os.environ["LUMI_TEST_DISCORD_URL"])
    raise SystemExit(main(sys.argv[1:] or ["run"]))
