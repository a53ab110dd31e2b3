"""`/moderation setup|status|classifiers|cases`: a server's moderation settings and what it has found."""

from __future__ import annotations

from typing import Any, Literal

import discord
from discord import app_commands

from bot.services.moderation import CaseStatus, GuildModeration
from cogs.moderation import render
from cogs.moderation.base import ModerationBase

Category = Literal["sexual_explicit", "suggestive", "violence", "violence_graphic", "self_harm"]

# Module level so that the other `/moderation` subcommands (privacy.py) can join the group.
moderation_group = app_commands.Group(
    name="moderation",
    description="Image moderation in this server",
    guild_only=True,
    default_permissions=discord.Permissions(manage_messages=True),
)


class ModerationSettings(ModerationBase):
    moderation = moderation_group

    @moderation.command(name="setup")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(
        mod_channel="Where alerts go",
        category="Which category the thresholds below apply to (default sexual_explicit)",
        review_threshold="Score (0-1) from which a post is held or alerted for review",
        auto_threshold="Score (0-1) from which Lumi acts at once",
        auto_action="What Lumi does at the auto-action threshold",
        review_action="What Lumi does at the review threshold",
        timeout_on_auto="Also time out the author on auto-action",
        timeout_minutes="Length of timeouts (auto-action and the Timeout button)",
        exempt_channel="A channel whose images are not checked (remove=True to undo)",
        exempt_role="A role whose members' images are not checked (remove=True to undo)",
        remove="Remove the given exempt channel/role instead of adding it",
        nsfw_channels_exempt="Skip age-restricted channels",
        unchecked_action=(
            "What to do with a post whose image Lumi cannot check: too large or unreadable (people see it)"
        ),
        enabled="Turn image moderation on or off",
        reset="Restore the default thresholds and actions first",
    )
    async def setup(
        self,
        interaction: discord.Interaction,
        mod_channel: discord.TextChannel | None = None,
        category: Category = "sexual_explicit",
        review_threshold: app_commands.Range[float, 0.0, 1.0] | None = None,
        auto_threshold: app_commands.Range[float, 0.0, 1.0] | None = None,
        auto_action: Literal["delete", "hold", "alert"] | None = None,
        review_action: Literal["hold", "alert"] | None = None,
        timeout_on_auto: bool | None = None,
        timeout_minutes: app_commands.Range[int, 1, 40320] | None = None,
        exempt_channel: discord.TextChannel | None = None,
        exempt_role: discord.Role | None = None,
        remove: bool = False,
        nsfw_channels_exempt: bool | None = None,
        unchecked_action: Literal["alert", "hold", "none"] | None = None,
        enabled: bool | None = None,
        reset: bool = False,
    ) -> None:
        """Set the moderation channel, thresholds, actions and exemptions."""
        assert interaction.guild is not None
        changes: dict[str, Any] = {}
        rule: dict[str, float] = {}
        if review_threshold is not None:
            rule["review"] = review_threshold
        if auto_threshold is not None:
            rule["act"] = auto_threshold
        if rule:
            changes["categories"] = {category: rule}
        for key, value in (
            ("auto_action", auto_action),
            ("review_action", review_action),
            ("timeout_on_auto_action", timeout_on_auto),
            ("timeout_minutes", timeout_minutes),
            ("exempt_nsfw_channels", nsfw_channels_exempt),
            ("unchecked_action", unchecked_action),
        ):
            if value is not None:
                changes[key] = value
        channels = [exempt_channel.id] if exempt_channel else []
        roles = [exempt_role.id] if exempt_role else []
        config = await self.service.configure(
            interaction.guild.id,
            enabled=enabled,
            mod_channel_id=mod_channel.id if mod_channel else None,
            policy_changes=changes,
            reset_policy=reset,
            exempt_channels_add=[] if remove else channels,
            exempt_channels_remove=channels if remove else [],
            exempt_roles_add=[] if remove else roles,
            exempt_roles_remove=roles if remove else [],
        )
        await interaction.response.send_message(
            embed=await self._status(interaction.guild, config), ephemeral=True
        )

    @moderation.command(name="status")
    async def status(self, interaction: discord.Interaction) -> None:
        """Show the settings, what Lumi lacks, open cases and recent problems."""
        assert interaction.guild is not None
        config = await self.service.guild_config(interaction.guild.id)
        await interaction.response.send_message(
            embed=await self._status(interaction.guild, config), ephemeral=True
        )

    async def _status(self, guild: discord.Guild, config: GuildModeration) -> discord.Embed:
        me = guild.me
        missing = [
            name
            for name, granted in (
                ("Manage Messages", me.guild_permissions.manage_messages),
                ("Moderate Members", me.guild_permissions.moderate_members),
            )
            if not granted
        ]
        channel_problem = None
        if config.mod_channel_id is None:
            channel_problem = "alerts cannot be posted until one is set"
        else:
            channel = guild.get_channel(config.mod_channel_id)
            if channel is None:
                channel_problem = "this channel no longer exists"
            else:
                perms = channel.permissions_for(me)
                lacking = [
                    label
                    for label, ok in (
                        ("View Channel", perms.view_channel),
                        ("Send Messages", perms.send_messages),
                        ("Embed Links", perms.embed_links),
                        ("Attach Files", perms.attach_files),
                    )
                    if not ok
                ]
                if lacking:
                    channel_problem = "Lumi lacks " + ", ".join(lacking) + " there"
        open_cases = len(await self.service.list_cases(guild.id, status=CaseStatus.OPEN, limit=1000))
        snapshot = self.service.checker.registry.snapshot()
        models = ", ".join(
            f"{m.name}: {'loaded' if m.loaded else m.error or 'loads on first use'}" for m in snapshot
        )
        return render.status_embed(
            config,
            mod_channel_problem=channel_problem,
            missing_permissions=missing,
            open_cases=open_cases,
            problems=self.service.problems(guild.id),
            models=models or "none",
        )

    @moderation.command(name="classifiers")
    async def classifiers(self, interaction: discord.Interaction) -> None:
        """List the custom image classifiers scoring this server's posts, and their thresholds."""
        assert interaction.guild is not None
        entries = await self.service.active_classifiers(interaction.guild.id)
        config = await self.service.guild_config(interaction.guild.id)
        await interaction.response.send_message(
            embed=render.classifiers_embed(entries, config.policy), ephemeral=True
        )

    @moderation.command(name="cases")
    @app_commands.describe(status="Only cases in this state", user="Only cases of this author")
    async def cases(
        self,
        interaction: discord.Interaction,
        status: Literal["open", "auto_actioned", "confirmed", "restored", "dismissed"] | None = None,
        user: discord.User | None = None,
    ) -> None:
        """List recent moderation cases."""
        assert interaction.guild is not None
        found = await self.service.list_cases(
            interaction.guild.id,
            status=CaseStatus(status) if status else None,
            author_id=user.id if user else None,
            limit=15,
        )
        await interaction.response.send_message(embed=render.cases_embed(found), ephemeral=True)
