"""The Discord client: intents, start-up (database, services, cogs, web server) and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol, runtime_checkable

import discord
from discord.ext import commands

from bot.config import Settings
from bot.errors import UserFacingError
from bot.interaction_errors import install_error_handler
from bot.runtime import Runtime
from bot.web.app import WebServer

log = logging.getLogger(__name__)

# Loaded by dotted name so that nothing in `bot` imports `cogs`.
EXTENSIONS: tuple[str, ...] = ("cogs.admin", "cogs.moderation", "cogs.generate3d", "cogs.comments")


@runtime_checkable
class FinishesWorkInFlight(Protocol):
    """A cog with work of its own in flight (tasks it started, handlers still running) to finish at
    shutdown: within ``timeout`` seconds, the rest stopped."""

    async def finish_in_flight(self, timeout: float) -> None: ...  # noqa: ASYNC109


def lumi_intents() -> discord.Intents:
    intents = discord.Intents.default()
    # Attachments and content of guild messages arrive empty without this privileged intent.
    intents.message_content = True
    return intents


class LumiBot(commands.Bot):
    def __init__(
        self,
        settings: Settings,
        *,
        extensions: tuple[str, ...] = EXTENSIONS,
        serve: bool = True,
        **options: Any,
    ) -> None:
        options.setdefault("guild_ready_timeout", settings.discord_guild_ready_timeout_s)
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=lumi_intents(),
            help_command=None,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
            **options,
        )
        self.settings = settings
        self.extension_names = extensions
        # False when the bot only logs in to publish its command tree (`lumi sync`): the cogs add their
        # commands but start no background work, no web server runs beside a Lumi that may be serving,
        # and the database is never opened (the services exist, unconnected, for the cogs to hold).
        self.serving = serve
        self._runtime: Runtime | None = None
        self.web: WebServer | None = None
        self.accepting_work = True
        self.failed_extensions: dict[str, str] = {}

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("Lumi's runtime is not open yet (setup_hook has not run)")
        return self._runtime

    async def setup_hook(self) -> None:
        # Publishing commands needs the cogs, not the database: `lumi sync` never connects to it.
        self._runtime = await Runtime.open(self.settings) if self.serving else Runtime.unopened(self.settings)
        install_error_handler(self.tree)
        for name in self.extension_names:
            try:
                await self.load_extension(name)
            except Exception as error:
                # One broken feature must not take the others down.
                self.failed_extensions[name] = f"{type(error).__name__}: {error}"
                log.exception("could not load extension %s", name)
        if not self.serving:
            return
        self.web = WebServer(self.runtime)
        await self.web.start()
        await self._sync_dev_guild()

    async def _sync_dev_guild(self) -> None:
        guild_id = self.settings.discord_dev_guild_id
        if guild_id is None:
            log.info("slash commands not synced (set DISCORD_DEV_GUILD_ID, or run `lumi sync` once)")
            return
        guild = discord.Object(id=guild_id)
        self.tree.copy_global_to(guild=guild)
        synced = await self.tree.sync(guild=guild)
        log.info("synced %d slash commands to development guild %s", len(synced), guild_id)

    async def _finish_in_flight(self, timeout: float) -> None:  # noqa: ASYNC109
        """Every feature's work in flight, at once and under one deadline: a photo comment waits for the
        moderation verdict on its post, so the features must not be drained one after the other."""
        features = [cog for cog in self.cogs.values() if isinstance(cog, FinishesWorkInFlight)]
        outcomes = await asyncio.gather(
            *(feature.finish_in_flight(timeout) for feature in features), return_exceptions=True
        )
        for feature, outcome in zip(features, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error("letting %s finish its work failed", type(feature).__name__, exc_info=outcome)

    async def on_ready(self) -> None:
        user = self.user
        log.info("connected as %s (id %s) to %d guilds", user, user.id if user else "?", len(self.guilds))

    async def close(self) -> None:
        """Stop taking work, let cogs finish or persist what is in flight, then release everything.

        The work in flight finishes first, while the models, the database and the Discord session it
        needs are all still open; only then do the cogs unload and the session and runtime close.
        """
        self.accepting_work = False
        await self._finish_in_flight(self.settings.shutdown_drain_s)
        for name in list(self.extensions):
            try:
                await self.unload_extension(name)
            except Exception:
                log.exception("error while unloading %s", name)
        try:
            await super().close()
        finally:
            if self.web is not None:
                await self.web.stop()
                self.web = None
            if self._runtime is not None:
                await self._runtime.close()
                self._runtime = None
            log.info("Lumi stopped")


async def run_bot(settings: Settings) -> None:
    """Run until the gateway closes or SIGINT/SIGTERM asks Lumi to stop."""
    assert settings.discord_token is not None
    bot = LumiBot(settings)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    runner = asyncio.create_task(bot.start(settings.discord_token.get_secret_value()))
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if runner in done:
            try:
                runner.result()
            except discord.LoginFailure:
                raise UserFacingError("Discord rejected DISCORD_TOKEN; copy the bot's token again") from None
        else:
            log.info("shutdown requested")
    finally:
        stopper.cancel()
        if not bot.is_closed():
            await bot.close()
        if not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner


def _install_signal_handlers(stop: asyncio.Event) -> None:
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
