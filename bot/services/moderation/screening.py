"""A new post screened in one call: exemptions, downloads, what could not be checked, then the check.

`PostScreener.screen` is the whole pipeline the moderation listener runs for a post; the Discord layer
only carries out (delete, time out, alert) what the returned outcome asks for. It decides which images
to download (allowed hosts, each file once, the first `max_images_per_post`), which download failures
go to the moderators (files over the download limit, images past the per-post limit) and which point
at the set-up (every download failing) rather than at the poster.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.services.image_fetch import Downloads, ImageFetcher
from bot.services.moderation.check_results import Verdict
from bot.services.moderation.config import ModerationConfig
from bot.services.moderation.guild_config import GuildModeration
from bot.services.moderation.policy import DEFAULT_POLICY
from bot.services.moderation.problems import ProblemLog
from bot.services.moderation.recording import PostContext
from bot.services.moderation.scanning import PostOutcome, PostScanner
from bot.services.moderation.unchecked import images_past_limit, refused_downloads
from bot.services.posts import IncomingPost

__all__ = ["PostScreener", "ScanReport"]

log = logging.getLogger(__name__)

ScanReport = list[tuple[str, Verdict | str]]
"""Each image of a post by file name: its verdict, or why it was not checked (in words safe to show)."""


class PostScreener:
    def __init__(
        self,
        *,
        config: ModerationConfig,
        fetcher: ImageFetcher,
        scanner: PostScanner,
        problem_log: ProblemLog,
        guild_config: Callable[[int], Awaitable[GuildModeration]],
    ) -> None:
        self.config = config
        self.fetcher = fetcher
        self.scanner = scanner
        self.problem_log = problem_log
        self.guild_config = guild_config

    async def screen(self, post: IncomingPost) -> PostOutcome | None:
        """Check a new post's images as the guild's settings say; its case and what to do about it, or
        None when there is nothing to do (no image, exempt, nothing flagged)."""
        guild_id = post.guild_id
        if guild_id is None:
            return None
        sources = post.fetchable(self.fetcher.is_allowed)
        if not sources:
            return None
        limit = self.config.max_images_per_post
        sources, skipped = sources[:limit], sources[limit:]
        config = await self.guild_config(guild_id)
        place = post.place
        exemption = config.exemption(
            channel_ids=place.channel_ids, channel_nsfw=place.channel_nsfw, role_ids=place.role_ids
        )
        if exemption is not None:
            log.debug("message %s not checked: %s", post.message_id, exemption)
            return None
        downloads = await self.fetcher.fetch_all(sources)
        for filename, error in downloads.failures:
            log.info("image %s of message %s not fetched: %s", filename, post.message_id, error.message)
        # Files over the download limit and images past the per-post limit go to the moderators (the
        # guild's `unchecked_action`); the other failures are not the poster's doing, or not images
        # Discord shows, so they stay logged.
        refused = refused_downloads(downloads.failures)
        refused += images_past_limit([source.filename for source in skipped], limit=limit)
        if skipped:
            log.info(
                "message %s: %d image(s) past the first %d not checked", post.message_id, len(skipped), limit
            )
        self._report_set_up_problem(post, downloads)
        context = PostContext(
            guild_id=guild_id,
            channel_id=post.channel_id,
            message_id=post.message_id,
            author_id=post.author_id,
        )
        return await self.scanner.moderate_post(context, downloads.images, config=config, refused=refused)

    def _report_set_up_problem(self, post: IncomingPost, downloads: Downloads) -> None:
        other_failures = [error for _, error in downloads.failures if error.code != "too_large"]
        if other_failures and not downloads.images and post.guild_id is not None:
            # Every download failing points at the set-up (allowed hosts, network), not at one bad file.
            reason = other_failures[0].message
            self.problem_log.report(
                post.guild_id, f"no image of a post in #{post.channel_name} could be downloaded: {reason}"
            )

    async def scan(self, post: IncomingPost, *, guild_id: int | None) -> ScanReport:
        """A private report on a post's images against the policy of ``guild_id`` (None: the defaults).
        Nothing is recorded or published: this is someone asking, not a new post."""
        sources = post.fetchable(self.fetcher.is_allowed)
        limit = self.config.max_images_per_post
        downloads = await self.fetcher.fetch_all(sources[:limit])
        policy = DEFAULT_POLICY if guild_id is None else (await self.guild_config(guild_id)).policy
        verdicts = await asyncio.gather(
            *(
                self.scanner.check_image(image.data, guild_policy=policy, guild_id=guild_id)
                for image in downloads.images
            )
        )
        report: ScanReport = [
            (image.filename, verdict) for image, verdict in zip(downloads.images, verdicts, strict=True)
        ]
        report.extend((filename, error.message) for filename, error in downloads.failures)
        report.extend(
            (source.filename, f"not checked: past the first {limit} images") for source in sources[limit:]
        )
        return report
