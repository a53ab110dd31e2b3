"""What checking one image gives: its status, the verdict with scores and reason, and the frames it was
reached on; and the contract of the extra detectors (OpenAI moderation, custom classifiers) that add
category scores. Plain data, shared by the checker, the service and the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from bot.services.moderation.decisions import Decision, Level
from bot.services.moderation.detector_frames import DetectorFrames
from bot.services.moderation.policy import Action, CategoryRule
from inference.images import SIZE_REASON_CODES, DecodedImage, ImageLimits, decodes_alike

__all__ = [
    "SAFE",
    "CheckStatus",
    "CheckedImage",
    "DefinesCategories",
    "ExtraDetector",
    "KnownHash",
    "Verdict",
]


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


SAFE = Decision(level=Level.SAFE, action=Action.NONE)
"""The decision on an image with nothing to act on (safe, or not checkable and only logged)."""


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
