"""The policy's decision on one image: category scores from the detectors, the level they reach, the action.

NudeNet boxes, the open_nsfw probability and extra detectors' scores become one score per category
(`category_scores`); `decide` compares them with the guild's thresholds. Re-posts of confirmed images
and images Lumi could not check (too large, or unreadable yet shown by Discord) get their decisions
here too. Pure functions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from bot.services.moderation.policy import CATEGORIES, Action, CategoryRule, Policy

__all__ = [
    "EXPLICIT_LABELS",
    "SUGGESTIVE_LABELS",
    "Decision",
    "Level",
    "category_scores",
    "could_not_read",
    "decide",
    "repeat_decision",
    "too_large_to_check",
    "unchecked_decision",
]


class Level(StrEnum):
    """How far an image got past the thresholds; ordered from harmless to worst."""

    SAFE = "safe"
    REVIEW = "review"
    ACT = "act"

    @property
    def rank(self) -> int:
        return _LEVEL_RANK[self]


_LEVEL_RANK: Final = {Level.SAFE: 0, Level.REVIEW: 1, Level.ACT: 2}


# NudeNet 3.4 labels (320n.onnx) that make a post explicit, and those that only make it suggestive.
# Faces, feet, armpits, bellies and bare male chests are everyday photo content and count for nothing.
EXPLICIT_LABELS: Final = frozenset(
    {
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)
SUGGESTIVE_LABELS: Final = frozenset(
    {"FEMALE_GENITALIA_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED", "ANUS_COVERED"}
)
# open_nsfw is a single "how pornographic" probability. It feeds both categories; the suggestive
# category's lower thresholds make its lower band count there.
_OPEN_NSFW_CATEGORIES: Final = ("sexual_explicit", "suggestive")
# Why an image Discord may show could not be read, by the reason code of its rejection.
_UNREADABLE_WORDS: Final = {
    "corrupt": "damaged or incomplete",
    "unsupported_format": "a format Lumi cannot decode",
    "empty": "the download was empty",
}
_NOT_HELD: Final = "not held: Lumi has no copy of an image it did not download, so the post stays up"
# OpenAI omni-moderation names -> Lumi categories.
_EXTRA_NAMES: Final = {
    "sexual": "sexual_explicit",
    "violence": "violence",
    "violence/graphic": "violence_graphic",
    "violence_graphic": "violence_graphic",
    "sexual/minors": "sexual_explicit",
    "self-harm": "self_harm",
    "self-harm/intent": "self_harm",
    "self-harm/instructions": "self_harm",
    "self_harm": "self_harm",
}


@dataclass(frozen=True)
class Decision:
    level: Level
    action: Action
    category: str | None = None
    score: float = 0.0
    threshold: float | None = None
    reason: str = "no category reached its review threshold"
    timeout_author: bool = False
    matched_case_id: int | None = None

    @property
    def flagged(self) -> bool:
        return self.level is not Level.SAFE


@dataclass(frozen=True)
class _Candidate:
    level: Level
    category: str
    score: float
    threshold: float
    order: int = field(compare=False)


def category_scores(
    detections: Iterable[tuple[str, float]],
    open_nsfw: float | None,
    extra: Mapping[str, float] | None = None,
    *,
    custom: Collection[str] = (),
) -> dict[str, float]:
    """Category scores from NudeNet (label, confidence) pairs, the open_nsfw probability and extra scores.

    Each category takes the strongest evidence for it: one confident exposed-part box is as damning as a
    high overall score. ``custom`` names categories beyond `CATEGORIES` that extra scores may use (those
    of custom classifiers); other unknown names are dropped.
    """
    scores = {"sexual_explicit": 0.0, "suggestive": 0.0}
    for label, confidence in detections:
        if label in EXPLICIT_LABELS:
            scores["sexual_explicit"] = max(scores["sexual_explicit"], float(confidence))
        elif label in SUGGESTIVE_LABELS:
            scores["suggestive"] = max(scores["suggestive"], float(confidence))
    if open_nsfw is not None:
        for category in _OPEN_NSFW_CATEGORIES:
            scores[category] = max(scores[category], float(open_nsfw))
    for name, value in (extra or {}).items():
        category = _EXTRA_NAMES.get(name, name)
        if category in CATEGORIES or category in custom:
            scores[category] = max(scores.get(category, 0.0), float(value))
    return {name: round(min(1.0, max(0.0, value)), 4) for name, value in scores.items()}


def decide(scores: Mapping[str, float], policy: Policy) -> Decision:
    """The worst level any category reached, and the action the policy takes for it."""
    best: _Candidate | None = None
    order = list(CATEGORIES)
    for category, score in scores.items():
        rule = policy.rules.get(category)
        if rule is None:
            continue
        candidate = _level_for(category, score, rule, order.index(category) if category in order else 99)
        if candidate is None:
            continue
        if best is None or _outranks(candidate, best):
            best = candidate
    if best is None:
        return Decision(level=Level.SAFE, action=Action.NONE)
    if best.level is Level.ACT:
        action = policy.auto_action
        reason = f"{best.category} {best.score:.2f} ≥ auto-action threshold {best.threshold:.2f}"
        return Decision(
            level=Level.ACT,
            action=action,
            category=best.category,
            score=best.score,
            threshold=best.threshold,
            reason=reason,
            timeout_author=policy.timeout_on_auto_action,
        )
    rule = policy.rules[best.category]
    return Decision(
        level=Level.REVIEW,
        action=rule.review_action or policy.review_action,
        category=best.category,
        score=best.score,
        threshold=best.threshold,
        reason=f"{best.category} {best.score:.2f} ≥ review threshold {best.threshold:.2f}",
    )


def repeat_decision(policy: Policy, *, category: str | None, case_id: int | None, distance: int) -> Decision:
    """A re-post of an image a moderator already confirmed: auto-action without running the models."""
    return Decision(
        level=Level.ACT,
        action=policy.auto_action,
        category=category,
        score=1.0,
        reason=f"re-post of an image a moderator confirmed (hash distance {distance})",
        timeout_author=policy.timeout_on_auto_action,
        matched_case_id=case_id,
    )


def unchecked_decision(policy: Policy, *, unchecked: str, can_hold: bool = True) -> Decision | None:
    """What the policy does with a post whose images named by ``unchecked`` (e.g. "image too large for
    Lumi to check (10000×5000 px)") Lumi could not check; None when the guild only wants it logged.

    ``can_hold`` False: Lumi has no copy of some of them (it did not download them), so holding, which
    deletes the post to restore it later from a copy, could not be undone; such a post is alerted, and
    the alert says why.
    """
    if policy.unchecked_action is Action.NONE:
        return None
    reason = f"{unchecked}; please look at it"
    action = policy.unchecked_action
    if action is Action.HOLD and not can_hold:
        action = Action.ALERT
        reason = f"{reason} ({_NOT_HELD})"
    return Decision(level=Level.REVIEW, action=action, reason=reason)


def too_large_to_check(subject: str, size: tuple[int, int] | None) -> str:
    """ "image too large for Lumi to check (10000×5000 px)": the size is left out when unknown."""
    shown = _shown_size(size)
    return f"{subject} too large for Lumi to check{f' ({shown})' if shown else ''}"


def could_not_read(image_format: str | None, problem_code: str | None, size: tuple[int, int] | None) -> str:
    """ "PNG image Lumi could not read (damaged or incomplete)": an image Discord may show although Lumi
    could not decode it; the format is the one its first bytes announce, the size Discord's own."""
    subject = f"{image_format} image" if image_format else "image"
    why = _UNREADABLE_WORDS.get(problem_code or "", "not a format Lumi recognises")
    shown = _shown_size(size)
    return f"{subject} Lumi could not read ({why}{', ' + shown if shown else ''})"


def _shown_size(size: tuple[int, int] | None) -> str:
    return f"{size[0]}×{size[1]} px" if size and size[0] > 0 and size[1] > 0 else ""


def _level_for(category: str, score: float, rule: CategoryRule, order: int) -> _Candidate | None:
    if rule.act is not None and score >= rule.act:
        return _Candidate(Level.ACT, category, score, rule.act, order)
    if rule.review is not None and score >= rule.review:
        return _Candidate(Level.REVIEW, category, score, rule.review, order)
    return None


def _outranks(a: _Candidate, b: _Candidate) -> bool:
    if a.level.rank != b.level.rank:
        return a.level.rank > b.level.rank
    # Same level: the category listed first (the more severe one) names the case, then the higher margin.
    if a.order != b.order:
        return a.order < b.order
    return a.score - a.threshold > b.score - b.threshold
