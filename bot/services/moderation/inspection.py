"""One image's model outputs kept whole, so that a policy can judge them again without the models.

`ImageChecker.check_image` keeps only the verdict. The playground shows more (every box of every
sampled frame, each category's score against its thresholds) and lets a moderator move a threshold and
see the verdict change at once: `ImageChecker.inspect_image` returns an ``ImageInspection``, and
``judge_scored`` turns what it measured (a ``ScoredImage``, which holds no pixels and so can travel to a
browser and back) into the verdict under any policy, through the same `decide` the bot uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.services.moderation.check_results import CheckStatus, Verdict
from bot.services.moderation.decisions import Decision, Level, decide, too_large_to_check, unchecked_decision
from bot.services.moderation.policy import Action, CategoryRule, Policy
from inference.images import SIZE_REASON_CODES, DecodedImage
from inference.moderation import ImageAnalysis

__all__ = [
    "BOT_ACTIONS",
    "FrameFindings",
    "ImageInspection",
    "ScoredImage",
    "bot_action",
    "frame_findings",
    "judge_scored",
    "ranked_labels",
]

_SAFE = Decision(level=Level.SAFE, action=Action.NONE)

# What a moderator sees happen to the post, by the decision's action.
BOT_ACTIONS: Mapping[Action, str] = {
    Action.NONE: "allow",
    Action.ALERT: "alert",
    Action.HOLD: "hold",
    Action.DELETE: "delete",
}


@dataclass(frozen=True)
class FrameFindings:
    """What the models saw in one sampled frame. Boxes are (x, y, width, height) in the frame's pixels."""

    frame_index: int
    width: int
    height: int
    nsfw_score: float
    detections: list[dict[str, Any]]


@dataclass(frozen=True)
class ScoredImage:
    """What judging an image needs once the models ran: its category scores, or why it was not checked."""

    status: CheckStatus
    scores: dict[str, float] = field(default_factory=dict)
    problem: str | None = None
    problem_code: str | None = None
    width: int = 0
    height: int = 0

    @property
    def too_large_to_check(self) -> bool:
        return self.status is CheckStatus.UNREADABLE and self.problem_code in SIZE_REASON_CODES


@dataclass(frozen=True)
class ImageInspection:
    """Everything the checker measured in one image; ``decoded`` is None when it could not be decoded."""

    scored: ScoredImage
    labels: list[dict[str, Any]]
    frames: list[FrameFindings]
    # Rules of the custom classifiers' own categories, which join any policy judging this image.
    extra_rules: dict[str, CategoryRule]
    decoded: DecodedImage | None
    phash: str | None = None
    image_format: str | None = None
    frames_total: int = 0
    elapsed_ms: float = 0.0
    model_ms: dict[str, float] = field(default_factory=dict)

    def verdict(self, policy: Policy) -> Verdict:
        """The verdict `check_image` gives this image under ``policy`` (for a post outside any server)."""
        return Verdict(
            status=self.scored.status,
            decision=judge_scored(self.scored, policy, self.extra_rules),
            scores=self.scored.scores,
            labels=self.labels,
            phash=self.phash,
            problem=self.scored.problem,
            problem_code=self.scored.problem_code,
            image_format=self.image_format,
            width=self.scored.width,
            height=self.scored.height,
            frames_checked=len(self.frames),
            elapsed_ms=self.elapsed_ms,
        )


def judge_scored(
    image: ScoredImage, policy: Policy, extra_rules: Mapping[str, CategoryRule] | None = None
) -> Decision:
    """The decision on one image under ``policy``: the thresholds for a checked one; for one too large
    to check, what the policy does with unchecked images; nothing for files that are not images (the
    bot only logs those, as Discord cannot show them either)."""
    if image.status is CheckStatus.CHECKED:
        return decide(image.scores, policy.with_extra_rules(dict(extra_rules or {})))
    if image.too_large_to_check:
        subject = "animation" if image.problem_code == "animation_too_large" else "image"
        unchecked = too_large_to_check(subject, (image.width, image.height))
        return unchecked_decision(policy, unchecked=unchecked) or _SAFE
    return _SAFE


def bot_action(image: ScoredImage, decision: Decision) -> str:
    """One word for what happens to the post: allow, alert, hold, delete; "not checked" for a file the
    bot only logs, "error" when the models could not run."""
    if image.status is CheckStatus.ERROR:
        return "error"
    if image.status is CheckStatus.UNREADABLE and decision.level is Level.SAFE:
        return "not checked"
    return BOT_ACTIONS.get(decision.action, decision.action.value)


def ranked_labels(analysis: ImageAnalysis) -> list[dict[str, Any]]:
    """NudeNet labels, best score per label over all sampled frames, strongest first (as in `Verdict`)."""
    ranked = sorted(analysis.label_scores.items(), key=lambda item: -item[1])
    return [{"label": label, "score": round(score, 3)} for label, score in ranked]


def frame_findings(analysis: ImageAnalysis, decoded: DecodedImage) -> list[FrameFindings]:
    """Each sampled frame's boxes and open_nsfw score, with the size of the frame the boxes refer to."""
    return [
        FrameFindings(
            frame_index=frame.frame_index,
            width=picture.width,
            height=picture.height,
            nsfw_score=round(frame.nsfw_score, 4),
            detections=[
                {"label": found.label, "score": round(found.score, 3), "box": list(found.box)}
                for found in frame.detections
            ],
        )
        for frame, picture in zip(analysis.frames, decoded.frames, strict=True)
    ]
