"""`/lumi status` and `/lumi help`: what is running and how to use it."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import LumiBot
from bot.services.status import StatusReport, format_duration

HELP_TEXT = (
    "**Lumi** checks images posted here, comments on photos in channels that opt in, "
    "and turns text prompts into 3D models.\n"
    "• `/lumi status` — version, uptime, database, models and queues.\n"
    "Moderators configure each feature with its own command group."
)


def render_status(
    report: StatusReport,
    *,
    guild_count: int,
    failed: dict[str, str],
    shards: tuple[list[int], int | None] = ([], None),
) -> discord.Embed:
    """``shards``: the ids this process runs and the deployment's shard count."""
    colour = discord.Colour.green() if report.database_ok and not failed else discord.Colour.orange()
    embed = discord.Embed(title="Lumi status", colour=colour)
    embed.add_field(name="Version", value=report.version)
    embed.add_field(name="Uptime", value=format_duration(report.uptime_s))
    latency = f"{report.gateway_latency_ms:.0f} ms" if report.gateway_latency_ms is not None else "n/a"
    embed.add_field(name="Gateway latency", value=latency)
    database = report.database_backend + (" (ok)" if report.database_ok else " (UNREACHABLE)")
    embed.add_field(name="Database", value=database)
    embed.add_field(name="Servers", value=str(guild_count))
    shard_ids, shard_count = shards
    if shard_count is not None:
        running = ", ".join(str(shard_id) for shard_id in shard_ids) or "none"
        embed.add_field(name="Shards", value=f"{running} of {shard_count} (this process)")
    loaded = ", ".join(report.models_loaded) or "none yet (models load on first use)"
    embed.add_field(name="Models loaded", value=loaded, inline=False)
    queues = ", ".join(f"{name}: {depth}" for name, depth in report.queue_depths.items()) or "idle"
    embed.add_field(name="Queue depths", value=queues, inline=False)
    if failed:
        embed.add_field(name="Features not loaded", value="\n".join(failed)[:1024], inline=False)
    return embed


class Admin(commands.Cog):
    lumi = app_commands.Group(name="lumi", description="About this Lumi instance")

    def __init__(self, bot: LumiBot) -> None:
        self.bot = bot

    @lumi.command(name="status")
    async def status(self, interaction: discord.Interaction) -> None:
        """Show version, uptime, gateway latency, database, loaded models and queue depths."""
        report = await self.bot.runtime.status.report(gateway_latency_s=self.bot.latency)
        embed = render_status(
            report,
            guild_count=len(self.bot.guilds),
            failed=self.bot.failed_extensions,
            shards=(sorted(self.bot.shards), self.bot.shard_count),
        )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @lumi.command(name="help")
    async def help(self, interaction: discord.Interaction) -> None:
        """What Lumi does and where to start."""
        await interaction.response.send_message(HELP_TEXT, ephemeral=True)


async def setup(bot: LumiBot) -> None:
    await bot.add_cog(Admin(bot))
