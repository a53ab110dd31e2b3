"""`lumi run`: connect to Discord, or serve the playground when no token is configured."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from bot.cli.common import settings_and_logging
from bot.client import run_bot
from bot.config import Settings
from bot.runtime import Runtime
from bot.web.app import WebServer

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run Lumi (Discord bot + web server; playground only when DISCORD_TOKEN is unset)",
    )
    parser.add_argument("--host", help="web server address (default WEB_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="web server port (default WEB_PORT, 8080)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.host:
        overrides["web_host"] = args.host
    if args.port is not None:
        overrides["web_port"] = args.port
    settings = settings_and_logging(**overrides)
    if settings.has_discord_token:
        asyncio.run(run_bot(settings))
    else:
        asyncio.run(run_playground(settings))
    return 0


async def run_playground(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    runtime = await Runtime.open(settings)
    server = WebServer(runtime, playground_mode=True)
    try:
        await server.start()
        print(
            f"\nLumi is running in playground mode: {server.url}/\n"
            "  Open it in a browser to try moderation, photo comments and 3D generation on this machine.\n"
            f"  health: {server.url}/healthz   metrics: {server.url}/metrics\n"
            "  No DISCORD_TOKEN is set, so Lumi is not connected to Discord.\n"
            "  To connect: put DISCORD_TOKEN=<your bot token> in .env (see .env.example) and run again.\n"
            "  Press Ctrl+C to stop.\n",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("shutdown requested")
    finally:
        await server.stop()
        await runtime.close()
