"""Photo comments on Discord: the photo listener, `/comments`, `/comment` and "Comment on this photo"."""

from __future__ import annotations

import logging
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import LumiBot
from bot.services.comments import CommentService, GuildComments, PhotoComment
from bot.services.image_fetch import FetchError
from bot.services.posts import IncomingPost
from cogs.shared.posts import read_place, read_post
from cogs.shared.rate_limits import per_user_rate_limit
from inference.images import ImageRejected

log = logging.getLogger(__name__)

_SHUTDOWN_GRACE_S = 10.0
_NOTHING_SEEN = "Lumi found no face or object it knows in this photo, so it has nothing to say about it."


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
        if not message.attachments or not self.bot.accepting_work:
            return
        post = read_post(message)
        if not post.attachments:
            return
        self.service.in_flight.start(self._comment_on(message, post), name=f"comment-{message.id}")

    async def _comment_on(self, message: discord.Message, post: IncomingPost) -> None:
        """One call runs the pipeline (`comment_post`); then the reply, and `record` or `release`."""
        try:
            result = await self.service.comment_post(post)
            if result is None:
                return
            try:
                await message.reply(
                    result.comment, mention_author=False, allowed_mentions=discord.AllowedMentions.none()
                )
            except discord.HTTPException as error:
                await self.service.release(post.channel_id)
                if isinstance(error, discord.NotFound):
                    log.info("message %s was deleted before its comment was ready", message.id)
                else:
                    log.info("could not comment on message %s: HTTP %s", message.id, error.status)
                return
            await self.service.record(post, result)
        except Exception:
            # One bad post must not stop comments on the next one.
            log.exception("commenting on message %s failed", message.id)

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
    @per_user_rate_limit("comment")
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
            post = read_post(message)
            downloads = await self.service.fetcher.fetch_all(post.attachments[: self.service.max_images])
            for filename, error in downloads.failures:
                log.info("photo %s not fetched: %s", filename, error.message)
            images = downloads.images
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
        place = read_place(interaction.channel, interaction.user)
        problem = await self.service.moderation_problem(guild.id, images, place, message_id=message_id)
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
