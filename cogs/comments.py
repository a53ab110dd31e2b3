"""Photo comments on Discord: the photo listener, `/comments`, `/comment` and "Comment on this photo"."""

from __future__ import annotations

import asyncio
import logging
from pathlib import PurePosixPath
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import LumiBot
from bot.services.comments import CommentService, GuildComments, PhotoComment, PostRef, ScreenContext
from bot.services.image_fetch import FetchedImage, FetchError
from inference.images import ImageRejected

log = logging.getLogger(__name__)

_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".heic", ".heif", ".avif"})
_SHUTDOWN_GRACE_S = 10.0
_NOTHING_SEEN = "Lumi found no face or object it knows in this photo, so it has nothing to say about it."


def photo_attachments(message: discord.Message) -> list[discord.Attachment]:
    """Attachments that are pictures (by content type, or by name when Discord sent none)."""
    found = []
    for attachment in message.attachments:
        content_type = (attachment.content_type or "").split(";")[0].strip().lower()
        if content_type.startswith("image/") or (
            not content_type and PurePosixPath(attachment.filename.lower()).suffix in _IMAGE_SUFFIXES
        ):
            found.append(attachment)
    return found


def channel_ids(channel: Any) -> tuple[int, ...]:
    """The channel and, for a thread, its parent: settings made on a channel cover its threads."""
    parent_id = getattr(channel, "parent_id", None)
    if isinstance(channel, discord.Thread) and parent_id is not None:
        return (channel.id, parent_id)
    return (channel.id,)


def render_request(result: PhotoComment) -> str:
    labels = ", ".join(result.label_names())
    return f"{result.comment}\n-# {labels} · {result.backend} · {result.latency_ms:.0f} ms"


def render_settings(config: GuildComments, service: CommentService, *, models: str) -> str:
    channels = ", ".join(f"<#{channel}>" for channel in sorted(config.channel_ids))
    backend: str = config.backend
    if config.backend not in service.writer.available():
        backend += " (no LLM endpoint is configured on this Lumi, so its own model writes instead)"
    return (
        "**Photo comments**\n"
        f"Channels: {channels or 'none yet (`/comments enable`)'}\n"
        f"Language: {config.language} · Backend: {backend} · "
        f"Cooldown: {config.cooldown_s} s per channel\n"
        f"Models: {models}"
    )


class Comments(commands.Cog):
    comments = app_commands.Group(
        name="comments",
        description="SNS-style comments on photos in this server",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, bot: LumiBot) -> None:
        self.bot = bot
        self.service: CommentService = bot.runtime.comments
        self.menu = app_commands.ContextMenu(name="Comment on this photo", callback=self.comment_message)
        self.menu.guild_only = True

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)
        await self.drain()

    async def drain(self, timeout: float = _SHUTDOWN_GRACE_S) -> None:  # noqa: ASYNC109
        """Wait until the photo comments being written are done (at most ``timeout`` seconds)."""
        await self.service.in_flight.wait(timeout)

    async def finish_in_flight(self, timeout: float) -> None:  # noqa: ASYNC109
        """Shutdown: the comments being written are posted within ``timeout`` seconds, the rest stopped."""
        await self.service.in_flight.finish(timeout)

    # -- every photo post --------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        # Posts without a picture stop here: no database read, no download.
        if message.guild is None or message.author.bot or message.webhook_id is not None:
            return
        if not photo_attachments(message) or not self.bot.accepting_work:
            return
        self.service.in_flight.start(self._comment_on(message), name=f"comment-{message.id}")

    async def _comment_on(self, message: discord.Message) -> None:
        guild = message.guild
        assert guild is not None
        where = channel_ids(message.channel)
        config = await self.service.admit(guild.id, where)
        if config is None:
            return
        posted = False
        try:
            photos = photo_attachments(message)[: self.service.max_images]
            images = await self._download(photos)
            if len(images) < len(photos):
                # Fail closed, as the moderation gate does: a photo Lumi could not download (one over
                # the download limit, say) was not checked, so the post as a whole gets no comment.
                log.info("no comment on message %s: a photo could not be downloaded", message.id)
                return
            screen = ScreenContext(
                channel_ids=where,
                channel_nsfw=bool(getattr(message.channel, "is_nsfw", lambda: False)()),
                role_ids=tuple(role.id for role in getattr(message.author, "roles", [])),
                message_id=message.id,
            )
            result = await self.service.comment_post(
                [image.data for image in images], config=config, guild_id=guild.id, screen=screen
            )
            if result is None:
                return
            try:
                await message.reply(
                    result.comment, mention_author=False, allowed_mentions=discord.AllowedMentions.none()
                )
            except discord.NotFound:
                log.info("message %s was deleted before its comment was ready", message.id)
                return
            posted = True
            post = PostRef(guild.id, message.channel.id, message.id, message.author.id)
            await self.service.record(post, result)
        except discord.HTTPException as error:
            log.info("could not comment on message %s: HTTP %s", message.id, error.status)
        except Exception:
            # One bad post must not stop comments on the next one.
            log.exception("commenting on message %s failed", message.id)
        finally:
            if not posted:
                self.service.release(where[0])

    async def _download(self, attachments: list[discord.Attachment]) -> list[FetchedImage]:
        fetcher = self.service.fetcher
        results = await asyncio.gather(
            *(
                fetcher.fetch(a.url, filename=a.filename, declared_size=a.size)
                for a in attachments[: self.service.max_images]
            ),
            return_exceptions=True,
        )
        images = []
        for attachment, result in zip(attachments, results, strict=False):
            if isinstance(result, FetchedImage):
                images.append(result)
            elif isinstance(result, FetchError):
                log.info("photo %s not fetched: %s", attachment.filename, result.message)
            elif isinstance(result, BaseException):
                log.error("fetching %s failed unexpectedly", attachment.url, exc_info=result)
        return images

    # -- /comments --------------------------------------------------------------------------------------

    @comments.command(name="enable")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(channel="Where to comment on photos (default: this channel)")
    async def enable(
        self, interaction: discord.Interaction, channel: discord.TextChannel | None = None
    ) -> None:
        """Comment on every photo posted in a channel."""
        assert interaction.guild is not None and interaction.channel is not None
        target = channel or interaction.channel
        config = await self.service.configure(interaction.guild.id, enable_channels=[target.id])
        await self._answer_settings(interaction, config, f"Lumi now comments on photos in <#{target.id}>.")

    @comments.command(name="disable")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(channel="Where to stop commenting (default: this channel)")
    async def disable(
        self, interaction: discord.Interaction, channel: discord.TextChannel | None = None
    ) -> None:
        """Stop commenting on photos in a channel."""
        assert interaction.guild is not None and interaction.channel is not None
        target = channel or interaction.channel
        config = await self.service.configure(interaction.guild.id, disable_channels=[target.id])
        await self._answer_settings(interaction, config, f"Lumi no longer comments in <#{target.id}>.")

    @comments.command(name="settings")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(
        language="Language of the comments",
        backend="Who writes them: Lumi's own model, the configured LLM, or templates",
        cooldown="Seconds between two comments in one channel",
    )
    async def settings(
        self,
        interaction: discord.Interaction,
        language: Literal["ko", "en"] | None = None,
        backend: Literal["local", "llm", "template"] | None = None,
        cooldown: app_commands.Range[int, 0, 86400] | None = None,
    ) -> None:
        """Set the comment language, backend and per-channel cooldown."""
        assert interaction.guild is not None
        config = await self.service.configure(
            interaction.guild.id, language=language, backend=backend, cooldown_s=cooldown
        )
        await self._answer_settings(interaction, config, "Settings saved.")

    @comments.command(name="status")
    async def status(self, interaction: discord.Interaction) -> None:
        """Show where Lumi comments, in which language, with which backend."""
        assert interaction.guild is not None
        config = await self.service.guild_config(interaction.guild.id)
        await self._answer_settings(interaction, config, None)

    async def _answer_settings(
        self, interaction: discord.Interaction, config: GuildComments, headline: str | None
    ) -> None:
        text = render_settings(config, self.service, models=self._models())
        await interaction.response.send_message(f"{headline}\n\n{text}" if headline else text, ephemeral=True)

    def _models(self) -> str:
        names = ("faces", "emotions", "objects", "commenter")
        rows = [row for row in self.bot.runtime.registry.snapshot() if row.name in names]
        return ", ".join(
            f"{row.name}: {'loaded' if row.loaded else row.error or 'loads on first use'}" for row in rows
        )

    # -- on request -------------------------------------------------------------------------------------

    @app_commands.command(name="comment")
    @app_commands.guild_only()
    @app_commands.checks.cooldown(5, 60.0)
    @app_commands.describe(image="The photo", private="Only you see the comment")
    async def comment(
        self, interaction: discord.Interaction, image: discord.Attachment, private: bool = False
    ) -> None:
        """Write an SNS-style comment for a photo."""
        async with self.service.in_flight.track():
            await interaction.response.defer(ephemeral=private, thinking=True)
            try:
                fetched = await self.service.fetcher.fetch(
                    image.url, filename=image.filename, declared_size=image.size
                )
            except FetchError as error:
                await interaction.followup.send(error.message, ephemeral=True)
                return
            await interaction.followup.send(
                await self._on_request(interaction, [fetched.data]), ephemeral=private
            )

    async def comment_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Context menu "Comment on this photo": a comment only the requester sees."""
        # Private: a public comment on someone else's photo would read as if its author had asked.
        async with self.service.in_flight.track():
            await interaction.response.defer(ephemeral=True, thinking=True)
            images = await self._download(photo_attachments(message))
            if not images:
                await interaction.followup.send("That message has no photo Lumi can read.", ephemeral=True)
                return
            answer = await self._on_request(
                interaction, [image.data for image in images], message_id=message.id
            )
            await interaction.followup.send(answer, ephemeral=True)

    async def _on_request(
        self, interaction: discord.Interaction, images: list[bytes], *, message_id: int | None = None
    ) -> str:
        """``message_id``: the message the images come from, whose moderation verdict is used if known."""
        guild = interaction.guild
        assert guild is not None and interaction.channel is not None
        config = await self.service.guild_config(guild.id)
        roles = tuple(role.id for role in getattr(interaction.user, "roles", []))
        nsfw = bool(getattr(interaction.channel, "is_nsfw", lambda: False)())
        screen = ScreenContext(channel_ids(interaction.channel), nsfw, roles, message_id=message_id)
        problem = await self.service.moderation_problem(guild.id, images, screen)
        if problem is not None:
            return f"Lumi does not comment on this image: {problem}"
        try:
            result = await self.service.comment_on_images(
                images, language=config.language, backend=config.backend
            )
        except ImageRejected as rejected:
            return rejected.message
        return _NOTHING_SEEN if result is None else render_request(result)


async def setup(bot: LumiBot) -> None:
    await bot.add_cog(Comments(bot))
