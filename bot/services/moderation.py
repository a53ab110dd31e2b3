"""Image moderation: per-guild configuration, cases, evidence and moderator decisions. No Discord here.

The Discord layer (`cogs/moderation`) fetches a post's images, calls `moderate_post`, carries out the
removal/timeout/alert the outcome asks for, and reports back with `record_enforcement`; button clicks go
through `decide`. Everything a case needs is written before anything irreversible happens on Discord, so
a failed delete, a missing channel or a crash in between never loses a case or an image.

`moderate_post` also publishes its verdict on each post in `post_verdicts`, as soon as the images are
checked: photo comments on the same post read it there instead of checking the images again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.errors import UserFacingError
from bot.services.classifiers import ClassifierCatalog, RegisteredClassifier
from bot.services.image_fetch import FetchedImage, ImageFetcher
from bot.services.moderation_cases import (
    CaseChoice,
    EvidenceFile,
    PendingDecision,
    allowed_choices,
    case_category,
    refusal,
)
from bot.services.moderation_checker import CheckStatus, ImageChecker, KnownHash, Verdict
from bot.services.moderation_config import GuildModeration, config_from_row, edit_ids, merge_policy
from bot.services.moderation_evidence import EvidenceStore, case_assets
from bot.services.moderation_policy import (
    DEFAULT_POLICY,
    Action,
    Decision,
    Policy,
    PolicyError,
    parse_policy,
    policy_to_json,
)
from bot.services.moderation_unchecked import RefusedDownload, refused_downloads, unchecked_case
from bot.services.moderation_verdicts import PostVerdict, PostVerdicts, image_digests
from storage import repo
from storage.blobs import BlobStore
from storage.db import Database
from storage.models import AssetOwner, CaseAction, CaseStatus, ModerationCase, utcnow

# Re-exported: the Discord layer imports the moderation API from this one module.
__all__ = [
    "CaseChoice",
    "EvidenceFile",
    "ForgetReport",
    "GuildModeration",
    "ModerationService",
    "PendingDecision",
    "PostContext",
    "PostOutcome",
    "PurgedEvidence",
    "RefusedDownload",
    "allowed_choices",
    "case_category",
    "refused_downloads",
]

log = logging.getLogger(__name__)

_MAX_PROBLEMS = 20
_ACTION_TO_CASE: dict[Action, CaseAction] = {
    Action.DELETE: CaseAction.DELETED,
    Action.HOLD: CaseAction.HELD,
    Action.ALERT: CaseAction.ALERTED,
    Action.NONE: CaseAction.NONE,
}


@dataclass(frozen=True)
class PostContext:
    guild_id: int
    channel_id: int
    message_id: int
    author_id: int


@dataclass(frozen=True)
class PostOutcome:
    """A flagged post (or one with an image too large to check): its case and what to do now."""

    case: ModerationCase
    decision: Decision
    verdicts: list[tuple[FetchedImage, Verdict]]
    # The image the case is about: the worst flagged one, else the one too large to check; None when
    # the case is about an image Lumi refused to download (no bytes: no preview, no copy to restore).
    flagged_image: FetchedImage | None
    remove_post: bool
    timeout_minutes: int | None
    evidence_stored: bool


@dataclass(frozen=True)
class ForgetReport:
    counts: dict[str, int]
    # (channel id, message id, case number) of alerts that showed the user; the caller scrubs them.
    alerts: list[tuple[int, int, int]]


@dataclass(frozen=True)
class PurgedEvidence:
    case_id: int
    guild_id: int
    case_number: int
    alert_channel_id: int | None
    alert_message_id: int | None


class ModerationService:
    def __init__(
        self,
        *,
        database: Database,
        blobs: BlobStore,
        checker: ImageChecker,
        fetcher: ImageFetcher | None = None,
        evidence_retention: timedelta = timedelta(days=7),
        classifiers: ClassifierCatalog | None = None,
    ) -> None:
        self.database = database
        self.blobs = blobs
        self.checker = checker
        # Custom classifiers registered with `lumi models add-classifier`; the checker scores them.
        self.classifiers = classifiers
        self.fetcher = fetcher or ImageFetcher()
        self.evidence = EvidenceStore(database, blobs, retention=evidence_retention)
        # The verdict on each recent post, for the features that answer the same post.
        self.post_verdicts = PostVerdicts()
        self._problems: dict[int, deque[tuple[datetime, str]]] = defaultdict(
            lambda: deque(maxlen=_MAX_PROBLEMS)
        )
        self._hashes: dict[int, list[KnownHash]] = {}
        self._hash_locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._case_locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    # -- checking ---------------------------------------------------------------------------------------

    async def check_image(
        self, data: bytes, *, guild_policy: Policy = DEFAULT_POLICY, guild_id: int | None = None
    ) -> Verdict:
        """Check one image; with ``guild_id``, re-posts of images the guild confirmed skip the models."""
        known: Sequence[KnownHash] = ()
        if guild_id is not None and guild_policy.repeat_matching:
            known = await self._known_hashes(guild_id)
        return await self.checker.check_image(
            data, guild_policy=guild_policy, known_hashes=known, guild_id=guild_id
        )

    async def active_classifiers(self, guild_id: int) -> list[RegisteredClassifier]:
        """The custom classifiers that score this guild's images: global ones and its own."""
        if self.classifiers is None:
            return []
        return await self.classifiers.for_guild(guild_id, fresh=True)

    async def _known_hashes(self, guild_id: int) -> list[KnownHash]:
        cached = self._hashes.get(guild_id)
        if cached is not None:
            return cached
        async with self._hash_locks[guild_id]:
            if guild_id in self._hashes:
                return self._hashes[guild_id]
            async with self.database.session() as session:
                rows = await repo.list_image_hashes(session=session, guild_id=guild_id)
                known = []
                for row in rows:
                    case = (
                        await repo.get_case_by_id(session=session, case_id=row.case_id)
                        if row.case_id
                        else None
                    )
                    known.append(KnownHash(row.phash, row.case_id, case_category(case) if case else None))
            self._hashes[guild_id] = known
            return known

    # -- guild configuration ------------------------------------------------------------------------------

    async def guild_config(self, guild_id: int) -> GuildModeration:
        async with self.database.session() as session:
            row = await repo.get_guild_settings(session=session, guild_id=guild_id)
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
            row = await repo.get_guild_settings(session=session, guild_id=guild_id)
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
                row = await repo.update_guild_settings(session=session, guild_id=guild_id, **changes)
            await session.commit()
        return config_from_row(row)

    # -- posts ----------------------------------------------------------------------------------------

    async def moderate_post(
        self,
        post: PostContext,
        images: Sequence[FetchedImage],
        *,
        config: GuildModeration,
        refused: Sequence[RefusedDownload] = (),
    ) -> PostOutcome | None:
        """Check every image of a post; record a case when one is flagged, or else when one was too large
        to check (``refused``: too large to download) and the guild's ``unchecked_action`` asks for it.
        None when there is no case."""
        if not images and not refused:
            return None
        verdicts = await asyncio.gather(
            *(
                self.check_image(image.data, guild_policy=config.policy, guild_id=post.guild_id)
                for image in images
            )
        )
        pairs = list(zip(images, verdicts, strict=True))
        for image, verdict in pairs:
            if not verdict.checked:
                log.info(
                    "image %s in message %s not checked: %s", image.filename, post.message_id, verdict.problem
                )
                if verdict.status is CheckStatus.ERROR:
                    self.report_problem(post.guild_id, f"an image could not be checked: {verdict.problem}")
        worst = _worst(pairs)
        digests = await image_digests([image.data for image in images])
        by_digest = dict(zip(digests, verdicts, strict=True))
        # An image too large to check does not make the post "flagged"; its verdict, not checked, still
        # keeps readers such as photo comments away from it.
        self.post_verdicts.publish(post.message_id, PostVerdict(flagged=worst is not None, images=by_digest))
        case_about = worst or unchecked_case(pairs, refused, config.policy)
        if case_about is None:
            return None
        flagged_image, verdict = case_about
        decision = verdict.decision
        remove = decision.action.removes_post
        flagged_index = None if flagged_image is None else images.index(flagged_image)
        case, stored = await self._record_case(post, images, flagged_index, verdict, remove)
        return PostOutcome(
            case=case,
            decision=decision,
            verdicts=pairs,
            flagged_image=flagged_image,
            remove_post=remove and stored,
            timeout_minutes=config.policy.timeout_minutes if decision.timeout_author else None,
            evidence_stored=stored,
        )

    async def _record_case(
        self,
        post: PostContext,
        images: Sequence[FetchedImage],
        flagged_index: int | None,
        verdict: Verdict,
        remove: bool,
    ) -> tuple[ModerationCase, bool]:
        decision = verdict.decision
        action = decision.action
        status = CaseStatus.AUTO_ACTIONED if action is Action.DELETE else CaseStatus.OPEN
        reason = decision.reason
        if decision.matched_case_id is not None:
            reason = f"{reason} (case id {decision.matched_case_id})"
        written: list[str] = []
        async with self.database.session() as session:
            case = await repo.create_case(
                session=session,
                guild_id=post.guild_id,
                channel_id=post.channel_id,
                message_id=post.message_id,
                author_id=post.author_id,
                status=status,
                action=_ACTION_TO_CASE[action],
                scores=verdict.scores,
                labels=verdict.labels,
                reason=reason,
                image_phash=verdict.phash,
            )
            stored = False
            if remove:
                assert case.id is not None
                try:
                    written = await self.evidence.store(
                        session, case_id=case.id, guild_id=post.guild_id, images=images
                    )
                    stored = True
                except Exception:
                    # Never remove what could not be kept: the post stays up and the moderators decide.
                    log.exception("evidence for case %s could not be stored", case.case_number)
                    await self.evidence.delete_blobs(written)
                    written = []
                    problem = "the image could not be stored as evidence, so the post was left up"
                    self.report_problem(post.guild_id, f"case #{case.case_number}: {problem}")
                    case = await repo.update_case(
                        session=session,
                        case=case,
                        status=CaseStatus.OPEN,
                        action=CaseAction.ALERTED,
                        reason=f"{reason}\n{problem}",
                    )
                if stored:
                    case = await repo.update_case(
                        session=session,
                        case=case,
                        evidence_key=written[flagged_index or 0],
                        evidence_expires_at=utcnow() + self.evidence.retention,
                    )
            try:
                await session.commit()
            except BaseException:
                await self.evidence.delete_blobs(written)
                raise
        log.info(
            "case #%s in guild %s: %s (%s)",
            case.case_number,
            post.guild_id,
            case.action.value,
            decision.reason,
        )
        return case, stored

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
        orphaned: list[str] = []
        async with self._case_locks[case_id], self.database.session() as session:
            case = await _case_or_error(session, case_id)
            changes: dict[str, Any] = {}
            lines = []
            if post_removed is False and case.action in (CaseAction.DELETED, CaseAction.HELD):
                # The post is still up: a moderator has to act, and the private copy is not needed.
                changes.update(status=CaseStatus.OPEN, action=CaseAction.ALERTED)
                orphaned = await self.evidence.detach(session, case)
                changes.update(evidence_key=None, evidence_expires_at=None)
            if timed_out:
                lines.append("author timed out automatically")
            lines.extend(f"problem: {problem}" for problem in problems)
            if lines:
                changes["reason"] = "\n".join([case.reason, *lines])
            if alert is not None:
                changes.update(alert_channel_id=alert[0], alert_message_id=alert[1])
            if changes:
                case = await repo.update_case(session=session, case=case, **changes)
            await session.commit()
        await self.evidence.delete_blobs(orphaned)
        for problem in problems:
            self.report_problem(case.guild_id, f"case #{case.case_number}: {problem}")
        return case

    # -- decisions ------------------------------------------------------------------------------------

    @asynccontextmanager
    async def decide(
        self, *, guild_id: int, case_id: int, choice: CaseChoice, moderator_id: int
    ) -> AsyncIterator[PendingDecision]:
        """Validate a moderator's choice and hold the case while the caller carries it out on Discord.

        The case is updated when the block exits normally; ``pending.fail(...)`` records a problem
        instead. Raises ``UserFacingError`` when the case is unknown or already past that choice.
        """
        async with self._case_locks[case_id]:
            async with self.database.session() as session:
                case = await repo.get_case_by_id(session=session, case_id=case_id)
            if case is None or case.guild_id != guild_id:
                raise UserFacingError("That case does not exist in this server (any more).")
            if choice not in allowed_choices(case):
                raise UserFacingError(refusal(case, choice))
            config = await self.guild_config(guild_id)
            pending = PendingDecision(
                case=case,
                choice=choice,
                moderator_id=moderator_id,
                timeout_minutes=config.policy.timeout_minutes,
            )
            if choice is CaseChoice.RESTORE:
                pending.evidence = await self.evidence.load(case)
                if not pending.evidence:
                    raise UserFacingError(refusal(case, choice, evidence_missing=True))
            yield pending
            await self._apply_decision(pending)

    async def _apply_decision(self, pending: PendingDecision) -> None:
        case, choice, mention = pending.case, pending.choice, f"<@{pending.moderator_id}>"
        orphaned: list[str] = []
        confirmed_hash: str | None = None
        async with self.database.session() as session:
            case = await _case_or_error(session, _id(case))
            if pending.problem is not None:
                reason = f"{case.reason}\n{choice.value} by {mention} failed: {pending.problem}"
                pending.case = await repo.update_case(session=session, case=case, reason=reason)
                await session.commit()
                self.report_problem(case.guild_id, f"case #{case.case_number}: {pending.problem}")
                return
            changes: dict[str, Any] = {"decided_by": pending.moderator_id}
            if choice in (CaseChoice.CONFIRM, CaseChoice.TIMEOUT):
                if case.status is not CaseStatus.CONFIRMED and case.image_phash:
                    await repo.add_image_hash(
                        session=session, guild_id=case.guild_id, phash=case.image_phash, case_id=case.id
                    )
                    confirmed_hash = case.image_phash
                changes["status"] = CaseStatus.CONFIRMED
                if choice is CaseChoice.TIMEOUT:
                    changes["action"] = CaseAction.TIMED_OUT
                    line = f"author timed out for {pending.timeout_minutes} min by {mention}"
                else:
                    line = f"confirmed by {mention}"
                if pending.post_removed:
                    changes["action"] = changes.get("action", CaseAction.DELETED)
                    line += " (post removed)"
            elif choice is CaseChoice.RESTORE:
                changes["status"] = CaseStatus.RESTORED
                line = f"restored by {mention}"
            else:
                changes["status"] = CaseStatus.DISMISSED
                line = f"dismissed by {mention}"
            if choice in (CaseChoice.RESTORE, CaseChoice.DISMISS):
                # The image is public again, or judged harmless: keeping a private copy serves nobody.
                orphaned = await self.evidence.detach(session, case)
                changes.update(evidence_key=None, evidence_expires_at=None)
            changes["reason"] = f"{case.reason}\n{line}"
            pending.case = await repo.update_case(session=session, case=case, **changes)
            await session.commit()
        await self.evidence.delete_blobs(orphaned)
        if confirmed_hash is not None:
            known = await self._known_hashes(case.guild_id)
            known.append(KnownHash(confirmed_hash, case.id, case_category(case)))
        log.info("case #%s in guild %s: %s", case.case_number, case.guild_id, line)

    async def evidence_preview(self, case: ModerationCase) -> EvidenceFile | None:
        return await self.evidence.preview(case)

    # -- queries --------------------------------------------------------------------------------------

    async def get_case(self, case_id: int) -> ModerationCase | None:
        async with self.database.session() as session:
            return await repo.get_case_by_id(session=session, case_id=case_id)

    async def list_cases(
        self,
        guild_id: int,
        *,
        status: CaseStatus | None = None,
        author_id: int | None = None,
        limit: int = 10,
    ) -> list[ModerationCase]:
        async with self.database.session() as session:
            return await repo.list_cases(
                session=session, guild_id=guild_id, status=status, author_id=author_id, limit=limit
            )

    def report_problem(self, guild_id: int, text: str) -> None:
        """Something moderators should fix (permissions, missing channel); shown in `/moderation status`."""
        log.warning("moderation problem in guild %s: %s", guild_id, text)
        self._problems[guild_id].append((utcnow(), text))

    def problems(self, guild_id: int) -> list[tuple[datetime, str]]:
        return list(self._problems.get(guild_id, ()))

    # -- privacy ----------------------------------------------------------------------------------------

    async def forget_user(self, guild_id: int, user_id: int) -> ForgetReport:
        """Delete a user's moderation data in one guild: evidence, author and message ids, decisions."""
        async with self.database.session() as session:
            authored = await repo.list_cases(
                session=session, guild_id=guild_id, author_id=user_id, limit=1_000_000
            )
            alerts = [
                (case.alert_channel_id, case.alert_message_id, case.case_number)
                for case in authored
                if case.alert_channel_id is not None and case.alert_message_id is not None
            ]
            keys: set[str] = set()
            for case in authored:
                for asset in await case_assets(session, _id(case)):
                    keys.add(asset.key)
                    await repo.delete_asset(session=session, key=asset.key)
            deleted = await repo.delete_user_data(session=session, guild_id=guild_id, user_id=user_id)
            keys.update(deleted.blob_keys)
            await session.commit()
        await self.evidence.delete_blobs(sorted(keys))
        counts = deleted.counts()
        counts["blobs"] = len(keys)
        log.info("forgot user %s in guild %s: %s", user_id, guild_id, counts)
        return ForgetReport(counts=counts, alerts=[(c, m, n) for c, m, n in alerts if c and m])

    async def purge_expired_evidence(self, *, now: datetime | None = None) -> list[PurgedEvidence]:
        """Delete evidence past its retention time; returns the cases whose alerts still show a preview."""
        now = now or utcnow()
        purged: list[PurgedEvidence] = []
        keys: list[str] = []
        async with self.database.session() as session:
            for case in await repo.expired_evidence(session=session, now=now):
                keys.extend(await self.evidence.detach(session, case))
                await repo.update_case(
                    session=session, case=case, evidence_key=None, evidence_expires_at=None
                )
                purged.append(
                    PurgedEvidence(
                        _id(case),
                        case.guild_id,
                        case.case_number,
                        case.alert_channel_id,
                        case.alert_message_id,
                    )
                )
            # Evidence of cases whose key was already cleared (a failed clean-up half-way) expires too.
            for asset in await repo.expired_assets(session=session, now=now):
                if asset.owner_kind == AssetOwner.CASE.value:
                    keys.append(asset.key)
                    await repo.delete_asset(session=session, key=asset.key)
            await session.commit()
        await self.evidence.delete_blobs(keys)
        if purged:
            log.info("deleted expired evidence of %d case(s)", len(purged))
        return purged

    async def close(self) -> None:
        self.post_verdicts.stop_publishing()
        try:
            await self.fetcher.close()
        finally:
            await self.checker.close()


# -- helpers ------------------------------------------------------------------------------------------


def _id(case: ModerationCase) -> int:
    if case.id is None:  # pragma: no cover - every case read from the database has an id
        raise RuntimeError("moderation case without an id")
    return case.id


async def _case_or_error(session: AsyncSession, case_id: int) -> ModerationCase:
    case = await repo.get_case_by_id(session=session, case_id=case_id)
    if case is None:
        raise UserFacingError("That case no longer exists.")
    return case


def _worst(pairs: list[tuple[FetchedImage, Verdict]]) -> tuple[FetchedImage, Verdict] | None:
    flagged = [pair for pair in pairs if pair[1].flagged]
    if not flagged:
        return None

    def severity(pair: tuple[FetchedImage, Verdict]) -> tuple[int, int, float]:
        decision = pair[1].decision
        removes = 1 if decision.action.removes_post else 0
        return (decision.level.rank, removes, decision.score)

    return max(flagged, key=severity)
