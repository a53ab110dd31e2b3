"""From a Discord message to a recorded case: find the images, fetch them, check, act, alert.

Every Discord call that can fail for lack of permissions is caught and turned into a problem written on
the case and shown in `/moderation status`; the case itself is already stored by then.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import discord

from bot.services.image_fetch import FetchedImage, FetchError, ImageFetcher
from bot.services.moderation import (
    GuildModeration,
    ModerationService,
    PostContext,
    PostOutcome,
    images_past_limit,
    refused_downloads,
)
from cogs.moderation import render
from cogs.moderation.views import case_view
from storage.models import ModerationCase

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
_URL = re.compile(r"https?://[^\s<>\"')]+")
# Discord refuses bigger uploads from bots without boosts; a preview is not worth a failed alert.
MAX_PREVIEW_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class ImageSource:
    """An image of a message; the ``declared_*`` fields are an attachment's metadata (None otherwise)."""

    url: str
    filename: str
    declared_size: int | None = None
    declared_type: str | None = None
    declared_dimensions: tuple[int, int] | None = None


def _has_image_extension(name: str) -> bool:
    return PurePosixPath(name.lower()).suffix in IMAGE_EXTENSIONS


def _dedupe_key(url: str) -> str:
    # The same CDN file appears with different signature queries and on two hosts.
    parts = urlsplit(url)
    return parts.path


def image_sources(message: discord.Message, fetcher: ImageFetcher) -> list[ImageSource]:
    """Images of a message worth fetching: image attachments, and image links/embeds on allowed hosts."""
    found: dict[str, ImageSource] = {}

    def add(url: str | None, source: ImageSource) -> None:
        if url and fetcher.is_allowed(url):
            found.setdefault(_dedupe_key(url), source)

    for attachment in message.attachments:
        content_type = (attachment.content_type or "").split(";")[0].strip().lower()
        if content_type.startswith(("video/", "audio/")):
            continue
        if content_type.startswith("image/") or _has_image_extension(attachment.filename):
            # Discord gives a width and height only to images it could read: it shows those, so an
            # image among them that Lumi cannot decode still goes to the moderators.
            dimensions = (
                (attachment.width, attachment.height)
                if attachment.width is not None and attachment.height is not None
                else None
            )
            source = ImageSource(
                attachment.url, attachment.filename, attachment.size, attachment.content_type, dimensions
            )
            add(attachment.url, source)
    for embed in message.embeds:
        for url in (embed.image.url, embed.thumbnail.url, embed.url if embed.type == "image" else None):
            if url:
                add(url, ImageSource(url, _name_from_url(url)))
    for url in _URL.findall(message.content or ""):
        if _has_image_extension(urlsplit(url).path):
            add(url, ImageSource(url, _name_from_url(url)))
    return list(found.values())


def _name_from_url(url: str) -> str:
    return PurePosixPath(urlsplit(url).path).name or "image"


async def fetch_images(
    fetcher: ImageFetcher, sources: list[ImageSource]
) -> tuple[list[FetchedImage], list[tuple[str, FetchError]]]:
    """Fetch every source at once; returns the images and (filename, error) for those that failed."""
    results = await asyncio.gather(
        *(
            fetcher.fetch(
                s.url,
                filename=s.filename,
                declared_size=s.declared_size,
                declared_type=s.declared_type,
                declared_dimensions=s.declared_dimensions,
            )
            for s in sources
        ),
        return_exceptions=True,
    )
    images: list[FetchedImage] = []
    failures: list[tuple[str, FetchError]] = []
    for source, result in zip(sources, results, strict=True):
        if isinstance(result, FetchedImage):
            images.append(result)
        elif isinstance(result, FetchError):
            failures.append((source.filename, result))
        elif isinstance(result, BaseException):
            log.error("fetching %s failed unexpectedly", source.url, exc_info=result)
            failures.append((source.filename, FetchError("unexpected", "the download failed")))
    return images, failures


class Enforcer:
    """Runs the pipeline for one guild message and carries out what the service decided."""

    def __init__(self, bot: discord.Client, service: ModerationService, *, max_images: int) -> None:
        self.bot = bot
        self.service = service
        self.max_images = max_images

    async def handle_message(self, message: discord.Message) -> ModerationCase | None:
        guild = message.guild
        if guild is None or message.author.bot or message.webhook_id is not None:
            return None
        sources = image_sources(message, self.service.fetcher)
        if not sources:
            return None
        sources, skipped = sources[: self.max_images], sources[self.max_images :]
        config = await self.service.guild_config(guild.id)
        channel = message.channel
        channel_ids = [channel.id]
        parent_id = getattr(channel, "parent_id", None)
        if isinstance(channel, discord.Thread) and parent_id is not None:
            channel_ids.append(parent_id)
        nsfw = bool(getattr(channel, "is_nsfw", lambda: False)())
        roles = [role.id for role in getattr(message.author, "roles", [])]
        exemption = config.exemption(channel_ids=channel_ids, channel_nsfw=nsfw, role_ids=roles)
        if exemption is not None:
            log.debug("message %s not checked: %s", message.id, exemption)
            return None
        images, failures = await fetch_images(self.service.fetcher, sources)
        for filename, error in failures:
            log.info("image %s of message %s not fetched: %s", filename, message.id, error.message)
        # Files over the download limit and images past the per-post limit go to the moderators (the
        # guild's `unchecked_action`); the other failures are not the poster's doing, or not images
        # Discord shows, so they stay logged.
        refused = refused_downloads(failures)
        refused += images_past_limit([source.filename for source in skipped], limit=self.max_images)
        if skipped:
            log.info(
                "message %s: %d image(s) past the first %d not checked",
                message.id,
                len(skipped),
                self.max_images,
            )
        other_failures = [error for _, error in failures if error.code != "too_large"]
        if other_failures and not images:
            # Every download failing points at the set-up (allowed hosts, network), not at one bad file.
            self.service.report_problem(
                guild.id, f"no image of a post in #{channel} could be downloaded: {other_failures[0].message}"
            )
        post = PostContext(
            guild_id=guild.id, channel_id=channel.id, message_id=message.id, author_id=message.author.id
        )
        outcome = await self.service.moderate_post(post, images, config=config, refused=refused)
        if outcome is None:
            return None
        return await self.enforce(message, outcome, config)

    async def enforce(
        self, message: discord.Message, outcome: PostOutcome, config: GuildModeration
    ) -> ModerationCase:
        case = outcome.case
        case_id = case.id
        assert case_id is not None
        problems: list[str] = []
        removed: bool | None = None
        if outcome.remove_post:
            removed = await self._delete(message, problems)
        timed_out = False
        if outcome.timeout_minutes and isinstance(message.author, discord.Member):
            timed_out = await self._timeout(message.author, outcome.timeout_minutes, case, problems)
        case = await self.service.record_enforcement(
            case_id, post_removed=removed, timed_out=timed_out, problems=problems
        )
        alert_problems: list[str] = []
        alert = await self.post_alert(message.guild, config, case, outcome.flagged_image, alert_problems)
        if alert is not None or alert_problems:
            case = await self.service.record_enforcement(case_id, alert=alert, problems=alert_problems)
        return case

    async def _delete(self, message: discord.Message, problems: list[str]) -> bool:
        try:
            await message.delete()
        except discord.NotFound:
            # Already gone (its author or a moderator was faster); the evidence copy is kept all the same.
            return True
        except discord.Forbidden:
            problems.append(f"Lumi cannot delete messages in #{message.channel} (needs Manage Messages)")
            return False
        except discord.HTTPException as error:
            problems.append(f"deleting the post failed (HTTP {error.status})")
            return False
        return True

    async def _timeout(
        self, member: discord.Member, minutes: int, case: ModerationCase, problems: list[str]
    ) -> bool:
        try:
            await member.timeout(
                timedelta(minutes=minutes), reason=f"Lumi moderation case #{case.case_number}"
            )
        except discord.Forbidden:
            problems.append(f"Lumi cannot time out {member} (needs Moderate Members and a higher role)")
            return False
        except discord.HTTPException as error:
            problems.append(f"timing out the author failed (HTTP {error.status})")
            return False
        return True

    async def post_alert(
        self,
        guild: discord.Guild | None,
        config: GuildModeration,
        case: ModerationCase,
        preview: FetchedImage | None,
        problems: list[str],
    ) -> tuple[int, int] | None:
        """Post the alert with a spoilered preview and the buttons; None (and a problem) when impossible."""
        if guild is None:
            return None
        if config.mod_channel_id is None:
            problems.append(
                "no moderation channel is set (`/moderation setup mod_channel:`), so no alert was posted"
            )
            return None
        channel = guild.get_channel(config.mod_channel_id)
        if not isinstance(channel, discord.TextChannel | discord.Thread):
            problems.append("the moderation channel no longer exists; set a new one with `/moderation setup`")
            return None
        files = []
        if preview is not None and len(preview.data) <= MAX_PREVIEW_BYTES:
            if channel.permissions_for(guild.me).attach_files:
                files.append(image_file(preview.filename, preview.data, spoiler=True))
            else:
                problems.append(f"Lumi cannot attach files in #{channel}, so the alert has no preview")
        try:
            sent = await channel.send(
                embed=render.alert_embed(case),
                files=files,
                view=case_view(case),
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.Forbidden:
            problems.append(
                f"Lumi cannot post in the moderation channel #{channel} (needs Send Messages, Embed Links)"
            )
            return None
        except discord.HTTPException as error:
            problems.append(f"posting the alert failed (HTTP {error.status})")
            return None
        return channel.id, sent.id


def image_file(filename: str, data: bytes, *, spoiler: bool) -> discord.File:
    # Discord shows a preview only for names with an image extension.
    name = filename if _has_image_extension(filename) else f"{filename}.png"
    return discord.File(io.BytesIO(data), filename=name, spoiler=spoiler)
