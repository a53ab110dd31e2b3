"""The Discord client: intents, start-up (database, services, cogs, web server) and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol, runtime_checkable

import aiohttp
import discord
from discord.ext import commands

from bot.command_tree import LumiTree
from bot.config import Settings
from bot.deployment import Role
from bot.errors import UserFacingError
from bot.identify import IdentifyGate, LocalPacing, RedisIdentifyLock
from bot.interaction_errors import install_error_handler
from bot.runtime import Runtime
from bot.web.app import WebServer

log = logging.getLogger(__name__)

# Loaded by dotted name so that nothing in `bot` imports `cogs`.
EXTENSIONS: tuple[str, ...] = ("cogs.admin", "cogs.moderation", "cogs.generate3d", "cogs.comments")

# Waits between attempts to reach Discord at start-up: doubling from the first to at most the last.
LOGIN_RETRY_FIRST_S = 2.0
LOGIN_RETRY_MAX_S = 60.0


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


class LumiBot(commands.AutoShardedBot):
    """Lumi on Discord: the shards of DISCORD_SHARD_IDS (of DISCORD_SHARD_COUNT), or as many as Discord
    recommends when no plan is set; several shards run in one process."""

    def __init__(
        self,
        settings: Settings,
        *,
        extensions: tuple[str, ...] = EXTENSIONS,
        serve: bool = True,
        **options: Any,
    ) -> None:
        options.setdefault("guild_ready_timeout", settings.discord_guild_ready_timeout_s)
        if settings.shard_ids:
            # A gateway's slice of the plan (see bot/deployment.py); without one, Discord's recommendation.
            options.setdefault("shard_ids", settings.shard_ids)
            options.setdefault("shard_count", settings.discord_shard_count)
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=lumi_intents(),
            help_command=None,
            tree_cls=LumiTree,
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
        # Set when Lumi's own start-up begins: from then on a failure is Lumi's, not Discord's, and is not
        # retried by `login_with_retry`.
        self.setup_started = False
        self.identify_gate: IdentifyGate = (
            RedisIdentifyLock(
                settings.redis_url,
                max_concurrency=self._max_concurrency,
                window_s=settings.discord_identify_window_s,
                key_prefix=settings.redis_key_prefix,
            )
            if settings.lumi_mode == "distributed" and serve
            else LocalPacing(settings.discord_identify_window_s)
        )

    async def _max_concurrency(self) -> int:
        return (await self.fetch_session_start_limits()).max_concurrency

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Pace IDENTIFYs: in this process only when embedded, across every process when distributed."""
        await self.identify_gate.wait_turn(shard_id or 0, initial=initial)

    def runs(self, role: Role) -> bool:
        """Whether this process does `role`'s work: every role in an embedded Lumi, none for `lumi sync`."""
        return self.serving and self.settings.has_role(role)

    @property
    def has_runtime(self) -> bool:
        return self._runtime is not None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("Lumi's runtime is not open yet (setup_hook has not run)")
        return self._runtime

    async def setup_hook(self) -> None:
        self.setup_started = True
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
        if self.runs("web"):
            # Only web processes listen on WEB_PORT: a worker beside them on one host must be able to start.
            self.web = WebServer(self.runtime)
            await self.web.start()
        if self.runs("gateway") and 0 in (self.settings.shard_ids or [0]):
            # One process per deployment syncs: the one holding shard 0 (Discord's DMs go there too).
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
        shards = ",".join(str(shard_id) for shard_id in sorted(self.shards))
        log.info(
            "connected as %s (id %s) to %d guilds on shards %s of %s",
            user,
            user.id if user else "?",
            len(self.guilds),
            shards,
            self.shard_count,
        )

    async def on_shard_ready(self, shard_id: int) -> None:
        guilds = [guild.id for guild in self.guilds if guild.shard_id == shard_id]
        log.info("shard %d of %s ready with %d guilds", shard_id, self.shard_count, len(guilds))

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
            await self.identify_gate.close()
            if self._runtime is not None:
                await self._runtime.close()
                self._runtime = None
            log.info("Lumi stopped")


async def login_with_retry(
    bot: LumiBot,
    token: str,
    *,
    first_delay_s: float = LOGIN_RETRY_FIRST_S,
    max_delay_s: float = LOGIN_RETRY_MAX_S,
) -> None:
    """Log in, and while Discord cannot be reached (network down, DNS, an outage) wait and try again.

    Each failure is one warning saying what failed and when the next try is; a rejected token is final
    (`UserFacingError`). Only reaching Discord is retried: once `setup_hook` has begun, an error there is
    Lumi's own and propagates. (Once connected, discord.py reconnects the gateway by itself.)
    """
    delay = first_delay_s
    attempt = 1
    while True:
        try:
            await bot.login(token)
        except discord.LoginFailure:
            raise UserFacingError("Discord rejected DISCORD_TOKEN; copy the bot's token again") from None
        except (OSError, aiohttp.ClientError, discord.DiscordServerError) as error:
            if bot.setup_started:
                raise
            log.warning(
                "cannot reach Discord at %s (%s); trying again in %.0f s (attempt %d)",
                discord.http.Route.BASE,
                str(error) or type(error).__name__,
                delay,
                attempt,
            )
        else:
            if attempt > 1:
                log.info("reached Discord after %d attempts", attempt)
            return
        # The failed attempt opened an HTTP session; closing it closes its connector too, so the next
        # attempt must make a new one (discord.py does when the connector is unset).
        await bot.http.close()
        bot.http.connector = discord.utils.MISSING
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay_s)
        attempt += 1


async def _login_and_connect(bot: LumiBot, token: str) -> None:
    """Log in, then open the gateway; a process without the gateway role only logs in and waits.

    Logging in gives the REST API (a worker edits its jobs' replies through it) and runs `setup_hook`;
    only gateways receive Discord's events, so only they connect.
    """
    await login_with_retry(bot, token)
    if bot.settings.has_role("gateway"):
        await bot.connect(reconnect=True)
        return
    log.info("not connecting to the Discord gateway (roles: %s)", ",".join(bot.settings.lumi_roles))
    await asyncio.Event().wait()  # until run_bot is asked to stop and cancels this task


async def run_bot(settings: Settings) -> None:
    """Run until the gateway closes or SIGINT/SIGTERM asks Lumi to stop."""
    assert settings.discord_token is not None
    bot = LumiBot(settings)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    runner = asyncio.create_task(_login_and_connect(bot, settings.discord_token.get_secret_value()))
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
