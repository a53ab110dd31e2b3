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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from bot.services.moderation.check_results import (
    SAFE,
    CheckedImage,
    CheckStatus,
    DefinesCategories,
    ExtraDetector,
    KnownHash,
    Verdict,
)
from bot.services.moderation.decisions import category_scores, decide, repeat_decision
from bot.services.moderation.detector_frames import DetectorFrames
from bot.services.moderation.policy import DEFAULT_POLICY, CategoryRule, Policy
from inference.batcher import BatcherClosed, QueueFull
from inference.images import (
    DecodedImage,
    ImageLimits,
    ImageRejected,
    decode_image,
    hamming,
    phash,
)
from inference.moderation import (
    NUDENET,
    ImageAnalysis,
    ImageModerator,
    at_moderation_scale,
    register_moderation_models,
)
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


@dataclass(frozen=True)
class _Decoded:
    image: DecodedImage
    phash: str | None
    """None when nothing asked for it yet."""


@dataclass(frozen=True)
class _ModelRun:
    analysis: ImageAnalysis
    scores: dict[str, float]
    extra_rules: dict[str, CategoryRule]


class _NotChecked(Exception):
    """The models could not judge an image; ``reason`` is safe to show, ``code`` names the cause."""

    def __init__(self, reason: str, cause: BaseException) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = type(cause).__name__


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
                decision=SAFE,
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
        try:
            run = await self._run_models(data, image, guild_id)
        except _NotChecked as failure:
            log.warning("image not checked: %s", failure.reason)
            return Verdict(
                status=CheckStatus.ERROR,
                decision=SAFE,
                problem=failure.reason,
                problem_code=failure.code,
                elapsed_ms=_ms_since(started),
                **facts,
            )
        analysis, scores = run.analysis, run.scores
        policy = guild_policy.with_extra_rules(run.extra_rules)
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
        try:
            run = await self._run_models(data, image, guild_id)
        except _NotChecked as failure:
            scored = ScoredImage(
                CheckStatus.ERROR,
                problem=failure.reason,
                problem_code=failure.code,
                width=image.width,
                height=image.height,
            )
            return ImageInspection(scored, [], [], {}, image, elapsed_ms=_ms_since(started), **facts)
        analysis, scores, extra_rules = run.analysis, run.scores, run.extra_rules
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

    async def _run_models(self, data: bytes, image: DecodedImage, guild_id: int | None) -> _ModelRun:
        """NudeNet and open_nsfw on the frames, the extra detectors beside them, and the category scores.
        Raises `_NotChecked` when a model cannot run (not installed, queue full, shutting down)."""
        extra_task = (
            asyncio.ensure_future(self._extra_scores(data, guild_id)) if self.extra_detectors else None
        )
        try:
            analysis = await self._moderator.analyse(image)
        except (ModelUnavailable, QueueFull, BatcherClosed) as error:
            if extra_task is not None:
                extra_task.cancel()
            if isinstance(error, ModelUnavailable):
                raise _NotChecked(f"the {error.name} model is unavailable: {error.reason}", error) from error
            raise _NotChecked(str(error), error) from error
        except BaseException:
            if extra_task is not None:
                extra_task.cancel()
            raise
        extra = await extra_task if extra_task is not None else {}
        extra_rules = self._extra_rules(guild_id)
        scores = category_scores(
            analysis.label_scores.items(), analysis.nsfw_score, extra, custom=extra_rules.keys()
        )
        return _ModelRun(analysis, scores, extra_rules)

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
