"""Check one image: safe decoding, repeat matching, the models, then the policy. No database, no Discord.

`ImageChecker` is what `lumi scan`, the benchmark and the moderation service share. Decoding and hashing
run on a small thread pool of their own; the models run on their own threads behind their batchers, so
the event loop only schedules work. The perceptual hash is computed only where it is used: to match the
confirmed hashes of a guild that has some, and on a flagged image, whose case keeps it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot.services.moderation.decisions import Decision, Level, category_scores, decide, repeat_decision
from bot.services.moderation.detector_frames import DetectorFrames
from bot.services.moderation.policy import DEFAULT_POLICY, Action, CategoryRule, Policy
from inference.batcher import BatcherClosed, QueueFull
from inference.images import (
    SIZE_REASON_CODES,
    DecodedImage,
    ImageLimits,
    ImageRejected,
    decode_image,
    decodes_alike,
    hamming,
    phash,
)
from inference.moderation import NUDENET, ImageModerator, at_moderation_scale, register_moderation_models
from inference.registry import ModelRegistry, ModelUnavailable

if TYPE_CHECKING:
    from bot.services.moderation.inspection import ImageInspection

__all__ = [
    "CheckStatus",
    "CheckedImage",
    "DefinesCategories",
    "ExtraDetector",
    "ImageChecker",
    "KnownHash",
    "Verdict",
]

log = logging.getLogger(__name__)


class CheckStatus(StrEnum):
    CHECKED = "checked"
    # Matched a hash a moderator confirmed; the models were skipped.
    REPEAT = "repeat"
    # The bytes are not an image Lumi will look at (corrupt, too large, not an image...).
    UNREADABLE = "unreadable"
    # The models could not run (not installed, overloaded, shutting down).
    ERROR = "error"


class ExtraDetector(Protocol):
    """An additional detector (OpenAI moderation, a trained classifier) adding category scores.

    It looks at ``frames``: decoded at the caps' fixed side (not at NudeNet's and open_nsfw's scale),
    from the same bytes, when the first detector asks for them (`DetectorFrames`).

    Scores use the names in `policy.CATEGORIES` (or OpenAI's, which are mapped). A detector
    that fails is logged and left out; the local models still decide. ``guild_id`` is the server the
    image was posted in (None outside one), for detectors that differ per server.
    """

    @property
    def name(self) -> str: ...

    async def scores(
        self, data: bytes, frames: DetectorFrames, *, guild_id: int | None = None
    ) -> Mapping[str, float]: ...

    async def close(self) -> None: ...


@runtime_checkable
class DefinesCategories(Protocol):
    """An extra detector that scores categories of its own, beyond `policy.CATEGORIES`.

    Their rules join the guild's policy for that check; a category the policy already has keeps the
    policy's thresholds.
    """

    def category_rules(self, guild_id: int | None) -> Mapping[str, CategoryRule]: ...


@dataclass(frozen=True)
class KnownHash:
    """The perceptual hash of an image a moderator confirmed, and the case it came from."""

    phash: str
    case_id: int | None
    category: str | None = None


@dataclass(frozen=True)
class Verdict:
    status: CheckStatus
    decision: Decision
    scores: dict[str, float] = field(default_factory=dict)
    # NudeNet labels, best score per label over all sampled frames, strongest first.
    labels: list[dict[str, Any]] = field(default_factory=list)
    phash: str | None = None
    # Why the image was not checked, in words safe to show (status UNREADABLE or ERROR).
    problem: str | None = None
    problem_code: str | None = None
    # The decoded format; for an image Lumi could not decode, the format its first bytes announce.
    image_format: str | None = None
    width: int = 0
    height: int = 0
    frames_checked: int = 0
    elapsed_ms: float = 0.0

    @property
    def flagged(self) -> bool:
        return self.decision.flagged

    @property
    def checked(self) -> bool:
        return self.status in (CheckStatus.CHECKED, CheckStatus.REPEAT)

    @property
    def too_large_to_check(self) -> bool:
        """Not checked only because of its size: a real image, which Discord may well show to everyone."""
        return self.status is CheckStatus.UNREADABLE and self.problem_code in SIZE_REASON_CODES

    @property
    def may_be_shown(self) -> bool:
        """Not checked, yet people may well see it: too large to check, or damaged (or in a format Lumi
        cannot decode) while its first bytes announce an image, which a viewer may still show in part."""
        return self.status is CheckStatus.UNREADABLE and (
            self.too_large_to_check or self.image_format is not None
        )

    @property
    def summary(self) -> str:
        if self.status is CheckStatus.UNREADABLE:
            return f"not checked: {self.problem}"
        if self.status is CheckStatus.ERROR:
            return f"error: {self.problem}"
        if not self.flagged:
            return "safe"
        return f"{self.decision.level.value} → {self.decision.action.value}: {self.decision.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "level": self.decision.level.value,
            "action": self.decision.action.value,
            "category": self.decision.category,
            "reason": self.decision.reason if self.checked else self.problem,
            "scores": self.scores,
            "labels": self.labels,
            "phash": self.phash,
            "problem_code": self.problem_code,
            "format": self.image_format,
            "width": self.width,
            "height": self.height,
            "frames_checked": self.frames_checked,
            "may_be_shown": self.may_be_shown,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "matched_case_id": self.decision.matched_case_id,
        }


_SAFE = Decision(level=Level.SAFE, action=Action.NONE)


@dataclass(frozen=True)
class CheckedImage:
    """A verdict with the frames it was reached on, so that a feature looking at the same image next
    (photo comments) need not decode it again."""

    verdict: Verdict
    decoded: DecodedImage | None
    """None when the bytes could not be decoded (the verdict says why)."""
    limits: ImageLimits
    """The caps the frames were decoded under: frame count and scale follow from them."""

    def frames_under(self, limits: ImageLimits) -> DecodedImage | None:
        """The decoded frames when decoding under ``limits`` gives the same frames at the same scale
        (`decodes_alike`: the same caps, or an image neither scale shrinks), else None: a reader at
        another scale (photo comments' 640 px for an image moderation decoded at its models' scale)
        decodes the bytes itself."""
        if self.decoded is None or not decodes_alike(self.decoded, self.limits, limits):
            return None
        return self.decoded


@dataclass(frozen=True)
class _Decoded:
    image: DecodedImage
    phash: str | None
    """None when nothing asked for it yet."""


class ImageChecker:
    """Turns image bytes into a `Verdict`. Registers NudeNet and open_nsfw in ``registry`` if needed."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        limits: ImageLimits | None = None,
        extra_detectors: Sequence[ExtraDetector] = (),
        decode_threads: int = 2,
        model_threads: int | None = None,
        hash_every_image: bool = False,
    ) -> None:
        """``model_threads``: CPU threads of each moderation model (None: half the cores).

        ``hash_every_image``: give every checked image's verdict its perceptual hash (`lumi scan` prints
        it); otherwise only a verdict that needs it has one (repeat matching, a flagged image).
        """
        if not registry.is_registered(NUDENET):
            register_moderation_models(registry, intra_op_threads=model_threads)
        self.registry = registry
        # The caps as given, for the extra detectors; the models' frames are decoded at their own scale.
        self.detector_limits = limits or ImageLimits()
        self.limits = at_moderation_scale(self.detector_limits)
        self.extra_detectors = list(extra_detectors)
        self.hash_every_image = hash_every_image
        self._moderator = ImageModerator(registry)
        self._decode_pool = ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="lumi-decode")

    async def check_image(
        self,
        data: bytes,
        *,
        guild_policy: Policy = DEFAULT_POLICY,
        known_hashes: Sequence[KnownHash] = (),
        guild_id: int | None = None,
    ) -> Verdict:
        """Check one image. Never raises for bad input or missing models: the verdict says what happened."""
        checked = await self.inspect(
            data, guild_policy=guild_policy, known_hashes=known_hashes, guild_id=guild_id
        )
        return checked.verdict

    async def inspect(
        self,
        data: bytes,
        *,
        guild_policy: Policy = DEFAULT_POLICY,
        known_hashes: Sequence[KnownHash] = (),
        guild_id: int | None = None,
    ) -> CheckedImage:
        """`check_image`, keeping the frames the verdict was reached on for whoever looks at it next."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        # Known hashes are worth a hash only when the guild matches re-posts at all.
        matching = guild_policy.repeat_matching and bool(known_hashes)
        try:
            decoded = await loop.run_in_executor(
                self._decode_pool, self._decode, data, matching or self.hash_every_image
            )
        except ImageRejected as rejected:
            width, height = rejected.size or (0, 0)
            verdict = Verdict(
                status=CheckStatus.UNREADABLE,
                decision=_SAFE,
                problem=rejected.message,
                problem_code=rejected.reason_code,
                image_format=rejected.image_format,
                width=width,
                height=height,
                elapsed_ms=_ms_since(started),
            )
            return CheckedImage(verdict, None, self.limits)
        verdict = await self._judge(data, decoded, guild_policy, known_hashes, guild_id, started)
        if verdict.phash is None and verdict.flagged:
            # A flagged image becomes a case, which keeps the hash so that a confirmed case catches re-posts.
            image_hash = await loop.run_in_executor(self._decode_pool, phash, decoded.image.frames[0])
            verdict = replace(verdict, phash=image_hash)
        return CheckedImage(verdict, decoded.image, self.limits)

    async def _judge(
        self,
        data: bytes,
        decoded: _Decoded,
        guild_policy: Policy,
        known_hashes: Sequence[KnownHash],
        guild_id: int | None,
        started: float,
    ) -> Verdict:
        image = decoded.image
        facts: dict[str, Any] = {
            "phash": decoded.phash,
            "image_format": image.format,
            "width": image.width,
            "height": image.height,
        }
        if guild_policy.repeat_matching and decoded.phash is not None:
            match = _closest(decoded.phash, known_hashes, guild_policy.repeat_max_distance)
            if match is not None:
                known, distance = match
                decision = repeat_decision(
                    guild_policy, category=known.category, case_id=known.case_id, distance=distance
                )
                return Verdict(
                    status=CheckStatus.REPEAT, decision=decision, elapsed_ms=_ms_since(started), **facts
                )
        extra_task = (
            asyncio.ensure_future(self._extra_scores(data, guild_id)) if self.extra_detectors else None
        )
        try:
            analysis = await self._moderator.analyse(image)
        except (ModelUnavailable, QueueFull, BatcherClosed) as error:
            if extra_task is not None:
                extra_task.cancel()
            if isinstance(error, ModelUnavailable):
                reason = f"the {error.name} model is unavailable: {error.reason}"
            else:
                reason = str(error)
            log.warning("image not checked: %s", reason)
            return Verdict(
                status=CheckStatus.ERROR,
                decision=_SAFE,
                problem=reason,
                problem_code=type(error).__name__,
                elapsed_ms=_ms_since(started),
                **facts,
            )
        except BaseException:
            if extra_task is not None:
                extra_task.cancel()
            raise
        extra = await extra_task if extra_task is not None else {}
        extra_rules = self._extra_rules(guild_id)
        policy = guild_policy.with_extra_rules(extra_rules)
        scores = category_scores(
            analysis.label_scores.items(), analysis.nsfw_score, extra, custom=extra_rules.keys()
        )
        labels = [
            {"label": label, "score": round(score, 3)}
            for label, score in sorted(analysis.label_scores.items(), key=lambda item: -item[1])
        ]
        return Verdict(
            status=CheckStatus.CHECKED,
            decision=decide(scores, policy),
            scores=scores,
            labels=labels,
            frames_checked=len(image.frames),
            elapsed_ms=_ms_since(started),
            **facts,
        )

    async def inspect_image(self, data: bytes, *, guild_id: int | None = None) -> ImageInspection:
        """Run the same decoding, models and extra detectors as `check_image`, keeping every output
        (boxes per frame, the decoded frames) for the playground; `ImageInspection.verdict` then gives
        `check_image`'s verdict under any policy without running the models again. Never raises for bad
        input or missing models. No repeat matching: the playground belongs to no server."""
        # Imported here: the inspection module builds on this one's Verdict.
        from bot.services.moderation.inspection import (
            ImageInspection,
            ScoredImage,
            frame_findings,
            ranked_labels,
        )

        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            # The playground shows the hash, as `lumi scan` does.
            decoded = await loop.run_in_executor(self._decode_pool, self._decode, data, True)
        except ImageRejected as rejected:
            width, height = rejected.size or (0, 0)
            scored = ScoredImage(
                CheckStatus.UNREADABLE,
                problem=rejected.message,
                problem_code=rejected.reason_code,
                width=width,
                height=height,
            )
            return ImageInspection(scored, [], [], {}, None, elapsed_ms=_ms_since(started))
        image = decoded.image
        facts: dict[str, Any] = {
            "phash": decoded.phash,
            "image_format": image.format,
            "frames_total": image.n_frames_total,
        }
        extra_task = (
            asyncio.ensure_future(self._extra_scores(data, guild_id)) if self.extra_detectors else None
        )
        try:
            analysis = await self._moderator.analyse(image)
        except (ModelUnavailable, QueueFull, BatcherClosed) as error:
            if extra_task is not None:
                extra_task.cancel()
            reason = (
                f"the {error.name} model is unavailable: {error.reason}"
                if isinstance(error, ModelUnavailable)
                else str(error)
            )
            scored = ScoredImage(
                CheckStatus.ERROR,
                problem=reason,
                problem_code=type(error).__name__,
                width=image.width,
                height=image.height,
            )
            return ImageInspection(scored, [], [], {}, image, elapsed_ms=_ms_since(started), **facts)
        except BaseException:
            if extra_task is not None:
                extra_task.cancel()
            raise
        extra = await extra_task if extra_task is not None else {}
        extra_rules = self._extra_rules(guild_id)
        scores = category_scores(
            analysis.label_scores.items(), analysis.nsfw_score, extra, custom=extra_rules.keys()
        )
        return ImageInspection(
            ScoredImage(CheckStatus.CHECKED, scores=scores, width=image.width, height=image.height),
            ranked_labels(analysis),
            frame_findings(analysis, image),
            extra_rules,
            image,
            elapsed_ms=_ms_since(started),
            model_ms={name: round(seconds * 1000.0, 1) for name, seconds in analysis.model_seconds.items()},
            **facts,
        )

    def custom_category_rules(self, guild_id: int | None = None) -> dict[str, CategoryRule]:
        """The rules of the custom classifiers' own categories, which join the policy for ``guild_id``."""
        return self._extra_rules(guild_id)

    def _decode(self, data: bytes, with_hash: bool) -> _Decoded:
        image = decode_image(data, limits=self.limits)
        return _Decoded(image=image, phash=phash(image.frames[0]) if with_hash else None)

    async def _extra_scores(self, data: bytes, guild_id: int | None) -> dict[str, float]:
        combined: dict[str, float] = {}
        frames = DetectorFrames(data, self.detector_limits, self._decode_pool)
        for detector in self.extra_detectors:
            try:
                scores = await detector.scores(data, frames, guild_id=guild_id)
            except Exception:
                log.warning("extra detector %s failed; deciding without it", detector.name, exc_info=True)
                continue
            for name, value in scores.items():
                combined[name] = max(float(value), combined.get(name, 0.0))
        return combined

    def _extra_rules(self, guild_id: int | None) -> dict[str, CategoryRule]:
        rules: dict[str, CategoryRule] = {}
        for detector in self.extra_detectors:
            if isinstance(detector, DefinesCategories):
                for name, rule in detector.category_rules(guild_id).items():
                    rules.setdefault(name, rule)
        return rules

    async def close(self) -> None:
        """Stop the decoding threads and extra detectors; the models are the registry's to close."""
        self._decode_pool.shutdown(wait=False, cancel_futures=True)
        for detector in self.extra_detectors:
            try:
                await detector.close()
            except Exception:
                log.warning("closing extra detector %s failed", detector.name, exc_info=True)


def _closest(value: str, known: Sequence[KnownHash], max_distance: int) -> tuple[KnownHash, int] | None:
    best: tuple[KnownHash, int] | None = None
    for entry in known:
        distance = hamming(value, entry.phash)
        if distance <= max_distance and (best is None or distance < best[1]):
            best = (entry, distance)
    return best


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
