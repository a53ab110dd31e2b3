"""Checking a post's images against the guild's policy, and opening a case when one calls for it.

`PostScanner.moderate_post` publishes its verdict on each post in the `VerdictFeed` as soon as the images
are checked, before any case is written, with the images it downloaded and decoded: photo comments on
the same post take them there instead of fetching and checking the images again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bot.services.image_fetch import FetchedImage
from bot.services.moderation.check_results import CheckedImage, CheckStatus, KnownHash, Verdict
from bot.services.moderation.checker import ImageChecker
from bot.services.moderation.decisions import Decision
from bot.services.moderation.guild_config import GuildModeration
from bot.services.moderation.known_hashes import KnownHashes
from bot.services.moderation.policy import DEFAULT_POLICY, Policy
from bot.services.moderation.problems import ProblemLog
from bot.services.moderation.recording import CaseRecorder, PostContext
from bot.services.moderation.unchecked import RefusedDownload, unchecked_case
from bot.services.moderation.verdicts import HeldImage, PostVerdict, VerdictFeed, image_digests
from storage.models import ModerationCase

__all__ = ["PostOutcome", "PostScanner"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostOutcome:
    """A flagged post (or one with an image Lumi could not check): its case and what to do now."""

    case: ModerationCase
    decision: Decision
    verdicts: list[tuple[FetchedImage, Verdict]]
    # The image the case is about: the worst flagged one, else the one Lumi could not check; None when
    # the case is about an image Lumi refused to download (no bytes: no preview, no copy to restore).
    flagged_image: FetchedImage | None
    remove_post: bool
    timeout_minutes: int | None
    evidence_stored: bool
    # Where the alert goes (the guild's moderation channel); None: none is set, which the alert reports.
    alert_channel_id: int | None = None


class PostScanner:
    def __init__(
        self,
        *,
        checker: ImageChecker,
        known_hashes: KnownHashes,
        recorder: CaseRecorder,
        verdict_feed: VerdictFeed,
        problem_log: ProblemLog,
    ) -> None:
        self.checker = checker
        self.known_hashes = known_hashes
        self.recorder = recorder
        self.verdict_feed = verdict_feed
        self.problem_log = problem_log

    async def check_image(
        self, data: bytes, *, guild_policy: Policy = DEFAULT_POLICY, guild_id: int | None = None
    ) -> Verdict:
        """Check one image; with ``guild_id``, re-posts of images the guild confirmed skip the models."""
        checked = await self.inspect_image(data, guild_policy=guild_policy, guild_id=guild_id)
        return checked.verdict

    async def inspect_image(
        self, data: bytes, *, guild_policy: Policy = DEFAULT_POLICY, guild_id: int | None = None
    ) -> CheckedImage:
        """`check_image`, keeping the decoded frames."""
        known: Sequence[KnownHash] = ()
        if guild_id is not None and guild_policy.repeat_matching:
            known = await self.known_hashes.of_guild(guild_id)
        return await self.checker.inspect(
            data, guild_policy=guild_policy, known_hashes=known, guild_id=guild_id
        )

    async def moderate_post(
        self,
        post: PostContext,
        images: Sequence[FetchedImage],
        *,
        config: GuildModeration,
        refused: Sequence[RefusedDownload] = (),
    ) -> PostOutcome | None:
        """Check every image of a post; record a case when one is flagged, or else when Discord may show
        one that Lumi could not check (too large or unreadable; ``refused``: not downloaded, too large or
        past the per-post image limit) and the guild's ``unchecked_action`` asks for it.
        None when there is no case, or when the post already has one (Discord delivered it twice)."""
        if not images and not refused:
            return None
        checks = await asyncio.gather(
            *(
                self.inspect_image(image.data, guild_policy=config.policy, guild_id=post.guild_id)
                for image in images
            )
        )
        verdicts = [checked.verdict for checked in checks]
        pairs = list(zip(images, verdicts, strict=True))
        for image, verdict in pairs:
            if not verdict.checked:
                log.info(
                    "image %s in message %s not checked: %s", image.filename, post.message_id, verdict.problem
                )
                if verdict.status is CheckStatus.ERROR:
                    self.problem_log.report(
                        post.guild_id, f"an image could not be checked: {verdict.problem}"
                    )
        worst = _worst(pairs)
        digests = await image_digests([image.data for image in images])
        by_digest = dict(zip(digests, verdicts, strict=True))
        # An image Lumi could not check does not make the post "flagged"; its verdict, not checked, still
        # keeps readers such as photo comments away from it.
        self.verdict_feed.publish(
            post.message_id,
            PostVerdict(flagged=worst is not None, images=by_digest),
            downloads={
                image.url: HeldImage(image, checked) for image, checked in zip(images, checks, strict=True)
            },
        )
        # The decoded frames went to photo comments if they were waiting; the case needs only the bytes.
        del checks
        case_about = worst or unchecked_case(pairs, refused, config.policy)
        if case_about is None:
            return None
        flagged_image, verdict = case_about
        decision = verdict.decision
        remove = decision.action.removes_post
        flagged_index = None if flagged_image is None else images.index(flagged_image)
        recorded = await self.recorder.record_case(post, images, flagged_index, verdict, remove)
        if recorded is None:
            return None  # a second delivery of a message that has its case: nothing more to do
        case, stored = recorded
        return PostOutcome(
            case=case,
            decision=decision,
            verdicts=pairs,
            flagged_image=flagged_image,
            remove_post=remove and stored,
            timeout_minutes=config.policy.timeout_minutes if decision.timeout_author else None,
            evidence_stored=stored,
            alert_channel_id=config.mod_channel_id,
        )


def _worst(pairs: list[tuple[FetchedImage, Verdict]]) -> tuple[FetchedImage, Verdict] | None:
    flagged = [pair for pair in pairs if pair[1].flagged]
    if not flagged:
        return None

    def severity(pair: tuple[FetchedImage, Verdict]) -> tuple[int, int, float]:
        decision = pair[1].decision
        removes = 1 if decision.action.removes_post else 0
        return (decision.level.rank, removes, decision.score)

    return max(flagged, key=severity)
