"""Image moderation: the service the Discord layer and the command line talk to. No Discord here.

For each new post the Discord layer (`cogs/moderation`) makes at most three calls: `screen_post` (the
whole pipeline: exemptions, downloads, unchecked accounting, the check, the case), then, when there is
a case, `record_enforcement` with what the removal and timeout did, and `record_enforcement` once more
with the alert it posted. Button clicks go through `decide`. Everything a case needs is written before
anything irreversible happens on Discord, so a failed delete, a missing channel or a crash in between
never loses a case or an image.

Other features use two documented parts: `verdict_feed` (moderation's verdict on each new post, with the
images it downloaded) and `report_problem` (something moderators should fix, in `/moderation status`).

``ModerationService`` puts the parts together:
- ``screening``: a new post screened in one call;
- ``scanning``: a post's images checked, its verdict published, a case opened when needed;
- ``recording``: the case and its evidence written, then what Discord managed to do;
- ``review``: a moderator's choice on a case;
- ``privacy``: a user's data forgotten, expired evidence deleted;
- ``known_hashes`` and ``problems``: the confirmed images and the problems it remembers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from bot.errors import UserFacingError
from bot.services.image_fetch import FetchedImage, ImageFetcher
from bot.services.moderation.cases import CaseChoice, EvidenceFile, PendingDecision
from bot.services.moderation.check_results import CheckedImage, Verdict
from bot.services.moderation.checker import ImageChecker
from bot.services.moderation.classifiers import ClassifierCatalog, RegisteredClassifier
from bot.services.moderation.config import ModerationConfig
from bot.services.moderation.decisions import Decision
from bot.services.moderation.evidence import EvidenceStore
from bot.services.moderation.guild_config import GuildModeration, config_from_row, edit_ids, merge_policy
from bot.services.moderation.inspection import ImageInspection, ScoredImage, judge_scored
from bot.services.moderation.known_hashes import KnownHashes
from bot.services.moderation.policy import DEFAULT_POLICY, Policy
from bot.services.moderation.policy_json import PolicyError, parse_policy, policy_to_json
from bot.services.moderation.privacy import (
    ForgetReport,
    PurgedEvidence,
    forget_user,
    purge_expired_evidence,
)
from bot.services.moderation.problems import ProblemLog
from bot.services.moderation.recording import CaseRecorder, PostContext
from bot.services.moderation.review import CaseReview
from bot.services.moderation.scanning import PostOutcome, PostScanner
from bot.services.moderation.screening import PostScreener, ScanReport
from bot.services.moderation.unchecked import RefusedDownload
from bot.services.moderation.verdicts import VerdictFeed
from bot.services.posts import IncomingPost, PostPlace
from storage.blobs import BlobStore
from storage.db import Database
from storage.models import CaseStatus, ModerationCase
from storage.repo import cases as repo_cases
from storage.repo import guilds as repo_guilds

__all__ = ["ModerationService"]

log = logging.getLogger(__name__)


class ModerationService:
    def __init__(
        self,
        *,
        database: Database,
        blobs: BlobStore,
        checker: ImageChecker,
        fetcher: ImageFetcher | None = None,
        config: ModerationConfig | None = None,
        classifiers: ClassifierCatalog | None = None,
    ) -> None:
        """``config``: the process-wide settings (`build.moderation_config`; None: the defaults)."""
        self.database = database
        self.blobs = blobs
        self.checker = checker
        self.config = config or ModerationConfig()
        # Custom classifiers registered with `lumi models add-classifier`; the checker scores them.
        self.classifiers = classifiers
        self.fetcher = fetcher or ImageFetcher()
        self.evidence = EvidenceStore(database, blobs, retention=self.config.evidence_retention)
        self.verdict_feed = VerdictFeed()
        """The verdict on each recent post, with the images downloaded for it, for the features that
        answer the same post (photo comments): see `verdicts.VerdictFeed`."""
        self.problem_log = ProblemLog()
        self.known_hashes = KnownHashes(database)
        case_locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.recorder = CaseRecorder(
            database=database, evidence=self.evidence, problem_log=self.problem_log, case_locks=case_locks
        )
        self.scanner = PostScanner(
            checker=checker,
            known_hashes=self.known_hashes,
            recorder=self.recorder,
            verdict_feed=self.verdict_feed,
            problem_log=self.problem_log,
        )
        self.screener = PostScreener(
            config=self.config,
            fetcher=self.fetcher,
            scanner=self.scanner,
            problem_log=self.problem_log,
            guild_config=self.guild_config,
        )
        self.review = CaseReview(
            database=database,
            evidence=self.evidence,
            known_hashes=self.known_hashes,
            problem_log=self.problem_log,
            case_locks=case_locks,
            guild_config=self.guild_config,
        )

    # -- checking ---------------------------------------------------------------------------------------

    async def check_image(
        self, data: bytes, *, guild_policy: Policy = DEFAULT_POLICY, guild_id: int | None = None
    ) -> Verdict:
        """Check one image; with ``guild_id``, re-posts of images the guild confirmed skip the models."""
        return await self.scanner.check_image(data, guild_policy=guild_policy, guild_id=guild_id)

    async def screen_images(
        self, guild_id: int, images: Sequence[bytes], place: PostPlace
    ) -> list[CheckedImage] | None:
        """Check images as moderation checks a post at ``place`` (the guild's policy and confirmed
        images), keeping the decoded frames; None when moderation does not look there (it is off, or
        the channel or a role is exempt), so that nothing there can flag them."""
        config = await self.guild_config(guild_id)
        exemption = config.exemption(
            channel_ids=place.channel_ids, channel_nsfw=place.channel_nsfw, role_ids=place.role_ids
        )
        if exemption is not None:
            return None
        return list(
            await asyncio.gather(
                *(
                    self.scanner.inspect_image(data, guild_policy=config.policy, guild_id=guild_id)
                    for data in images
                )
            )
        )

    async def scan_post(self, post: IncomingPost, *, guild_id: int | None) -> ScanReport:
        """A private report on a post's images against the policy of ``guild_id`` (None: the defaults),
        for "Scan image"; nothing is recorded."""
        return await self.screener.scan(post, guild_id=guild_id)

    async def active_classifiers(self, guild_id: int) -> list[RegisteredClassifier]:
        """The custom classifiers that score this guild's images: global ones and its own."""
        if self.classifiers is None:
            return []
        return await self.classifiers.for_guild(guild_id, fresh=True)

    # -- the playground: scores kept, judged again under any policy -----------------------------------

    async def inspect_image(self, data: bytes) -> ImageInspection:
        """Everything the models see in one image, as for a post outside any server (see `inspection`)."""
        return await self.checker.inspect_image(data)

    def effective_policy(self, policy: Policy) -> Policy:
        """``policy`` with the rules of the custom classifiers' own categories, as checks apply it."""
        return policy.with_extra_rules(self.checker.custom_category_rules())

    def judge_scored(self, image: ScoredImage, policy: Policy) -> Decision:
        """The decision on measured scores under ``policy``, with the custom classifiers' categories:
        what `check_image` would decide, without running the models again."""
        return judge_scored(image, policy, self.checker.custom_category_rules())

    # -- guild configuration ------------------------------------------------------------------------------

    async def guild_config(self, guild_id: int) -> GuildModeration:
        async with self.database.session() as session:
            row = await repo_guilds.get_guild_settings(session=session, guild_id=guild_id)
            await session.commit()
        return config_from_row(row)

    async def configure(
        self,
        guild_id: int,
        *,
        enabled: bool | None = None,
        mod_channel_id: int | None = None,
        clear_mod_channel: bool = False,
        policy_changes: dict[str, Any] | None = None,
        reset_policy: bool = False,
        exempt_channels_add: Iterable[int] = (),
        exempt_channels_remove: Iterable[int] = (),
        exempt_roles_add: Iterable[int] = (),
        exempt_roles_remove: Iterable[int] = (),
    ) -> GuildModeration:
        """Apply a moderator's changes; raises ``UserFacingError`` naming any invalid value."""
        async with self.database.session() as session:
            row = await repo_guilds.get_guild_settings(session=session, guild_id=guild_id)
            changes: dict[str, Any] = {}
            if enabled is not None:
                changes["moderation_enabled"] = enabled
            if clear_mod_channel:
                changes["mod_channel_id"] = None
            elif mod_channel_id is not None:
                changes["mod_channel_id"] = mod_channel_id
            if reset_policy or policy_changes:
                base = {} if reset_policy else dict(row.moderation_policy or {})
                merged = merge_policy(base, policy_changes or {})
                try:
                    policy = parse_policy(merged)
                except PolicyError as error:
                    raise UserFacingError(str(error)) from None
                changes["moderation_policy"] = policy_to_json(policy)
            channels = edit_ids(row.exempt_channel_ids, exempt_channels_add, exempt_channels_remove)
            if channels != list(row.exempt_channel_ids):
                changes["exempt_channel_ids"] = channels
            roles = edit_ids(row.exempt_role_ids, exempt_roles_add, exempt_roles_remove)
            if roles != list(row.exempt_role_ids):
                changes["exempt_role_ids"] = roles
            if changes:
                row = await repo_guilds.update_guild_settings(session=session, guild_id=guild_id, **changes)
            await session.commit()
        return config_from_row(row)

    # -- posts ----------------------------------------------------------------------------------------

    async def screen_post(self, post: IncomingPost) -> PostOutcome | None:
        """Screen a new post in one call: exemptions, downloads, unchecked accounting, the check and,
        when one is called for, the case (recorded, with its evidence, before this returns).

        Returns what the Discord layer must carry out and alert (`PostOutcome`), or None when there is
        nothing to do. Never raises: a failure is logged and reported in `/moderation status`. Readers
        of `verdict_feed` get this post's verdict, or "no verdict" when it was not checked.
        """
        self.verdict_feed.expect(post.message_id)
        try:
            return await self.screener.screen(post)
        except Exception:
            # One bad post must not stop moderation of the next one.
            log.exception("moderating message %s failed", post.message_id)
            if post.guild_id is not None:
                self.report_problem(post.guild_id, "checking a post failed (see the log)")
            return None
        finally:
            # Posts that were not checked (exempt, no image) or whose check failed get no verdict.
            self.verdict_feed.withdraw(post.message_id)

    async def moderate_post(
        self,
        post: PostContext,
        images: Sequence[FetchedImage],
        *,
        config: GuildModeration,
        refused: Sequence[RefusedDownload] = (),
    ) -> PostOutcome | None:
        """Check images already downloaded and record a case when one is flagged or could not be checked
        (see `PostScanner.moderate_post`); None when there is no case. `screen_post` downloads first."""
        return await self.scanner.moderate_post(post, images, config=config, refused=refused)

    async def record_enforcement(
        self,
        case_id: int,
        *,
        post_removed: bool | None = None,
        timed_out: bool = False,
        alert: tuple[int, int] | None = None,
        problems: Sequence[str] = (),
    ) -> ModerationCase:
        """What the Discord layer managed to do for a new case (``post_removed`` None: not attempted)."""
        return await self.recorder.record_enforcement(
            case_id, post_removed=post_removed, timed_out=timed_out, alert=alert, problems=problems
        )

    # -- decisions ------------------------------------------------------------------------------------

    def decide(
        self, *, guild_id: int, case_id: int, choice: CaseChoice, moderator_id: int
    ) -> AbstractAsyncContextManager[PendingDecision]:
        """Validate a moderator's choice and hold the case while the caller carries it out on Discord.

        The case is updated when the block exits normally; ``pending.fail(...)`` records a problem
        instead. Raises ``UserFacingError`` when the case is unknown or already past that choice.
        """
        return self.review.decide(
            guild_id=guild_id, case_id=case_id, choice=choice, moderator_id=moderator_id
        )

    async def evidence_preview(self, case: ModerationCase) -> EvidenceFile | None:
        return await self.evidence.preview(case)

    # -- queries --------------------------------------------------------------------------------------

    async def get_case(self, case_id: int) -> ModerationCase | None:
        async with self.database.session() as session:
            return await repo_cases.get_case_by_id(session=session, case_id=case_id)

    async def list_cases(
        self,
        guild_id: int,
        *,
        status: CaseStatus | None = None,
        author_id: int | None = None,
        limit: int = 10,
    ) -> list[ModerationCase]:
        async with self.database.session() as session:
            return await repo_cases.list_cases(
                session=session, guild_id=guild_id, status=status, author_id=author_id, limit=limit
            )

    def report_problem(self, guild_id: int, text: str) -> None:
        """Something moderators should fix (permissions, missing channel); shown in `/moderation status`."""
        self.problem_log.report(guild_id, text)

    def problems(self, guild_id: int) -> list[tuple[datetime, str]]:
        return self.problem_log.of_guild(guild_id)

    # -- privacy ----------------------------------------------------------------------------------------

    async def forget_user(self, guild_id: int, user_id: int) -> ForgetReport:
        """Delete a user's moderation data in one guild: evidence, author and message ids, decisions."""
        return await forget_user(self.database, self.evidence, guild_id, user_id)

    async def purge_expired_evidence(self, *, now: datetime | None = None) -> list[PurgedEvidence]:
        """Delete evidence past its retention time; returns the cases whose alerts still show a preview."""
        return await purge_expired_evidence(self.database, self.evidence, now=now)

    async def close(self) -> None:
        self.verdict_feed.stop_publishing()
        try:
            await self.fetcher.close()
        finally:
            await self.checker.close()
