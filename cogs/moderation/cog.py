"""Image moderation on Discord: the message listener, `/moderation`, `/scan`, "Scan image", the buttons."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import LumiBot
from bot.errors import UserFacingError
from bot.services.moderation import ModerationService
from bot.services.moderation_cases import CaseChoice, PendingDecision
from bot.services.moderation_checker import Verdict
from bot.services.moderation_config import GuildModeration
from bot.services.moderation_privacy import PurgedEvidence
from bot.services.retention import EvidenceRetentionJob
from cogs.moderation import render
from cogs.moderation.enforcement import Enforcer, fetch_images, image_file, image_sources
from cogs.moderation.views import CaseButton, case_view
from storage.models import CaseStatus

log = logging.getLogger(__name__)

Category = Literal["sexual_explicit", "suggestive", "violence", "violence_graphic", "self_harm"]
_SHUTDOWN_GRACE_S = 10.0


class Moderation(commands.Cog):
    moderation = app_commands.Group(
        name="moderation",
        description="Image moderation in this server",
        guild_only=True,
        default_permissions=discord.Permissions(manage_messages=True),
    )

    def __init__(self, bot: LumiBot) -> None:
        self.bot = bot
        self.service: ModerationService = bot.runtime.moderation
        settings = bot.settings
        self.enforcer = Enforcer(bot, self.service, max_images=settings.moderation_max_images_per_message)
        self.retention = EvidenceRetentionJob(
            self.service, interval_s=settings.moderation_cleanup_interval_s, on_purged=self._scrub_previews
        )
        self._in_flight: set[asyncio.Task[Any]] = set()
        self.scan_menu = app_commands.ContextMenu(name="Scan image", callback=self.scan_message)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(CaseButton)
        self.bot.tree.add_command(self.scan_menu)
        if self.bot.serving:
            self.retention.start()
        self.service.post_verdicts.start_publishing()

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.scan_menu.name, type=self.scan_menu.type)
        self.bot.remove_dynamic_items(CaseButton)
        await self.retention.stop()
        if self._in_flight:
            # Posts being checked finish (their evidence is stored before anything is deleted).
            await asyncio.wait(set(self._in_flight), timeout=_SHUTDOWN_GRACE_S)
        self.service.post_verdicts.stop_publishing()

    # -- every message -----------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        # Text-only messages stop here: no database read, no model call.
        if message.guild is None or message.author.bot:
            return
        if not (message.attachments or message.embeds or "http" in message.content):
            return
        if not self.bot.accepting_work:
            return
        # Photo comments on this post wait for its verdict rather than check the images again.
        self.service.post_verdicts.expect(message.id)
        task = asyncio.create_task(self._moderate(message), name=f"moderate-{message.id}")
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _moderate(self, message: discord.Message) -> None:
        try:
            await self.enforcer.handle_message(message)
        except Exception:
            # One bad message must not stop moderation of the next one.
            log.exception("moderating message %s failed", message.id)
            if message.guild is not None:
                self.service.report_problem(message.guild.id, "checking a post failed (see the log)")
        finally:
            # Posts that were not checked (exempt, no image) or whose check failed get no verdict.
            self.service.post_verdicts.withdraw(message.id)

    # -- buttons ------------------------------------------------------------------------------------

    async def on_case_button(
        self, interaction: discord.Interaction, choice: CaseChoice, case_id: int
    ) -> None:
        guild = interaction.guild
        permissions = interaction.permissions
        if guild is None:
            return
        if not permissions.manage_messages:
            await interaction.response.send_message(
                "You need the Manage Messages permission.", ephemeral=True
            )
            return
        if choice is CaseChoice.TIMEOUT and not permissions.moderate_members:
            await interaction.response.send_message(
                "You need the Moderate Members permission.", ephemeral=True
            )
            return
        await interaction.response.defer()
        try:
            async with self.service.decide(
                guild_id=guild.id, case_id=case_id, choice=choice, moderator_id=interaction.user.id
            ) as pending:
                await self._carry_out(guild, pending)
        except UserFacingError as error:
            answer = error.message
            case = await self.service.get_case(case_id)
        except Exception:
            log.exception("%s on case id %s failed", choice.value, case_id)
            await interaction.followup.send(
                "That did not work; the details are in Lumi's log.", ephemeral=True
            )
            return
        else:
            case = pending.case
            answer = render.decision_summary(case, pending.problem)
        # The alert first, so that whoever reads the answer already sees the updated alert.
        if case is not None and case.guild_id == guild.id:
            try:
                await interaction.edit_original_response(embed=render.alert_embed(case), view=case_view(case))
            except discord.HTTPException as error:
                log.info("could not update the alert of case id %s: %s", case_id, error)
        await interaction.followup.send(answer, ephemeral=True)

    async def _carry_out(self, guild: discord.Guild, pending: PendingDecision) -> None:
        case = pending.case
        if pending.choice in (CaseChoice.CONFIRM, CaseChoice.TIMEOUT) and pending.post_still_up:
            await self._remove_post(guild, pending)
            if pending.problem is not None:
                return
        if pending.choice is CaseChoice.TIMEOUT:
            await self._timeout_author(guild, pending)
        elif pending.choice is CaseChoice.RESTORE:
            channel = guild.get_channel_or_thread(case.channel_id)
            if not isinstance(channel, discord.abc.Messageable):
                pending.fail("the post's channel no longer exists")
                return
            files = [image_file(f.filename, f.data, spoiler=False) for f in pending.evidence]
            text = (
                f"Restored post by <@{case.author_id}> (moderation case #{case.case_number}, "
                f"restored by <@{pending.moderator_id}>)."
            )
            try:
                await channel.send(text, files=files, allowed_mentions=discord.AllowedMentions.none())
            except discord.HTTPException as error:
                pending.fail(f"Lumi could not post in <#{case.channel_id}> (HTTP {error.status})")

    async def _remove_post(self, guild: discord.Guild, pending: PendingDecision) -> None:
        case = pending.case
        assert case.message_id is not None
        message = self.bot.get_partial_messageable(case.channel_id, guild_id=guild.id).get_partial_message(
            case.message_id
        )
        try:
            await message.delete()
        except discord.NotFound:
            pass
        except discord.Forbidden:
            pending.fail(f"Lumi cannot delete messages in <#{case.channel_id}> (needs Manage Messages)")
            return
        except discord.HTTPException as error:
            pending.fail(f"deleting the post failed (HTTP {error.status})")
            return
        pending.post_removed = True

    async def _timeout_author(self, guild: discord.Guild, pending: PendingDecision) -> None:
        author_id = pending.case.author_id
        try:
            member = guild.get_member(author_id) or await guild.fetch_member(author_id)
            await member.timeout(
                timedelta(minutes=pending.timeout_minutes),
                reason=f"Lumi moderation case #{pending.case.case_number}",
            )
        except discord.NotFound:
            pending.fail("the author is no longer in this server")
        except discord.Forbidden:
            pending.fail("Lumi cannot time out this member (needs Moderate Members and a higher role)")
        except discord.HTTPException as error:
            pending.fail(f"the timeout failed (HTTP {error.status})")

    # -- /moderation ----------------------------------------------------------------------------------

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
            "What to do with a post whose image is too large for Lumi to check (people still see it)"
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

    @moderation.command(name="forget")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(user="The member whose moderation data should be deleted")
    async def forget(self, interaction: discord.Interaction, user: discord.User) -> None:
        """Delete a user's moderation data here: stored images, their id on cases, alert previews."""
        assert interaction.guild is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        report = await self.service.forget_user(interaction.guild.id, user.id)
        scrubbed = 0
        for channel_id, message_id, _number in report.alerts:
            if await self._redraw_alert(channel_id, message_id, drop_preview=True):
                scrubbed += 1
        counts = report.counts
        await interaction.followup.send(
            f"Deleted {user.mention}'s moderation data: {counts['cases_anonymised']} case(s) anonymised, "
            f"{counts['blobs']} stored image(s) deleted, {scrubbed} alert(s) scrubbed.",
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def _redraw_alert(self, channel_id: int, message_id: int, *, drop_preview: bool) -> bool:
        """Re-render an alert from its case (found through its buttons' custom ids), maybe without preview."""
        channel = self.bot.get_partial_messageable(channel_id)
        message = channel.get_partial_message(message_id)
        try:
            full = await message.fetch()
            case_id = _case_id_from(full)
            case = await self.service.get_case(case_id) if case_id is not None else None
            kwargs: dict[str, Any] = {"attachments": []} if drop_preview else {}
            if case is not None:
                kwargs.update(embed=render.alert_embed(case), view=case_view(case))
            await message.edit(**kwargs)
        except discord.HTTPException as error:
            log.info("could not update alert %s: %s", message_id, error)
            return False
        return True

    async def _scrub_previews(self, purged: Sequence[PurgedEvidence]) -> None:
        for item in purged:
            if item.alert_channel_id and item.alert_message_id:
                await self._redraw_alert(item.alert_channel_id, item.alert_message_id, drop_preview=True)

    # -- scanning on request ----------------------------------------------------------------------------

    @app_commands.command(name="scan")
    @app_commands.checks.cooldown(5, 60.0)
    @app_commands.describe(image="The image to check (only you see the result; nothing is stored)")
    async def scan(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        """Check an image against this server's moderation policy."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            data = await self.service.fetcher.fetch(
                image.url, filename=image.filename, declared_size=image.size
            )
        except Exception as error:
            message = getattr(error, "message", None) or "the download failed"
            await interaction.followup.send(render.scan_report([(image.filename, message)]), ephemeral=True)
            return
        verdict = await self._check(interaction, data.data)
        await interaction.followup.send(render.scan_report([(image.filename, verdict)]), ephemeral=True)

    async def scan_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Context menu "Scan image": check the images of a message, privately."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        sources = image_sources(message, self.service.fetcher, limit=self.enforcer.max_images)
        images, failures = await fetch_images(self.service.fetcher, sources)
        verdicts = await asyncio.gather(*(self._check(interaction, image.data) for image in images))
        results: list[tuple[str, Verdict | str]] = [
            (i.filename, v) for i, v in zip(images, verdicts, strict=True)
        ]
        results.extend((filename, error.message) for filename, error in failures)
        await interaction.followup.send(render.scan_report(results), ephemeral=True)

    async def _check(self, interaction: discord.Interaction, data: bytes) -> Verdict:
        if interaction.guild is None:
            return await self.service.check_image(data)
        config = await self.service.guild_config(interaction.guild.id)
        return await self.service.check_image(data, guild_policy=config.policy, guild_id=interaction.guild.id)


def _case_id_from(message: discord.Message) -> int | None:
    for row in message.components:
        for item in getattr(row, "children", []):
            custom_id = getattr(item, "custom_id", None) or ""
            if custom_id.startswith("lumi:mod:"):
                return int(custom_id.rsplit(":", 1)[1])
    return None
