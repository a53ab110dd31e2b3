"""Moderation policy: categories, per-guild thresholds and the decision for one image. Pure functions.

A guild stores only what it changed (`GuildSettings.moderation_policy`, a JSON object); `parse_policy`
merges that over `DEFAULT_POLICY` and rejects bad values with messages a moderator can act on. Scores
are probabilities in [0, 1]; each category has a *review* threshold (hold or alert, a moderator decides)
and an *auto-action* threshold (Lumi acts at once, then tells the moderators).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "CATEGORIES",
    "DEFAULT_POLICY",
    "EXPLICIT_LABELS",
    "SUGGESTIVE_LABELS",
    "Action",
    "CategoryRule",
    "Decision",
    "Level",
    "Policy",
    "PolicyError",
    "category_scores",
    "decide",
    "describe_policy",
    "parse_policy",
    "policy_to_json",
    "repeat_decision",
    "too_large_to_check",
    "unchecked_decision",
]


class PolicyError(ValueError):
    """A policy value a moderator entered is invalid; the message says which and what is allowed."""


class Level(StrEnum):
    """How far an image got past the thresholds; ordered from harmless to worst."""

    SAFE = "safe"
    REVIEW = "review"
    ACT = "act"

    @property
    def rank(self) -> int:
        return _LEVEL_RANK[self]


_LEVEL_RANK: Final = {Level.SAFE: 0, Level.REVIEW: 1, Level.ACT: 2}


class Action(StrEnum):
    """What happens to the post. HOLD deletes it too, but keeps the evidence so a moderator can restore it."""

    NONE = "none"
    ALERT = "alert"
    HOLD = "hold"
    DELETE = "delete"

    @property
    def removes_post(self) -> bool:
        return self in (Action.HOLD, Action.DELETE)


# Category name -> one line for moderators. Extra detectors (OpenAI moderation, Keras classifiers) report
# scores under these names; a category without a rule in the policy is shown but never acted on.
CATEGORIES: Final[dict[str, str]] = {
    "sexual_explicit": "exposed genitals, breasts, buttocks or anus; overall NSFW score",
    "suggestive": "covered intimate parts; lower overall NSFW score",
    "violence": "violence (extra detector)",
    "violence_graphic": "graphic violence, gore (extra detector)",
    "self_harm": "self-harm (extra detector)",
}

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

_MAX_TIMEOUT_MINUTES: Final = 28 * 24 * 60  # Discord's longest timeout
_REVIEW_ACTIONS: Final = (Action.HOLD, Action.ALERT)
_AUTO_ACTIONS: Final = (Action.DELETE, Action.HOLD, Action.ALERT)
# Deleting outright is not offered: nothing is known about the image, so a moderator must see it.
_UNCHECKED_ACTIONS: Final = (Action.ALERT, Action.HOLD, Action.NONE)
_UNCHECKED_WORDS: Final = {
    Action.ALERT: "alert the moderators",
    # Only images Lumi downloaded can be held (restored later); one over the download limit is alerted.
    Action.HOLD: "hold the post for review (alert only when over the download limit)",
    Action.NONE: "log only",
}


@dataclass(frozen=True)
class CategoryRule:
    """Thresholds of one category; ``None`` turns that level off. ``review_action`` overrides the guild's."""

    review: float | None
    act: float | None
    review_action: Action | None = None


@dataclass(frozen=True)
class Policy:
    rules: Mapping[str, CategoryRule]
    review_action: Action = Action.HOLD
    auto_action: Action = Action.DELETE
    timeout_on_auto_action: bool = False
    timeout_minutes: int = 60
    exempt_nsfw_channels: bool = True
    repeat_matching: bool = True
    # Hamming distance between 64-bit perceptual hashes; re-encodes and resizes of a photo stay within ~4.
    repeat_max_distance: int = 6
    # A post with an image too large to check (Discord still shows it to everyone).
    unchecked_action: Action = Action.ALERT

    def with_thresholds(self, category: str, *, review: float | None, act: float | None) -> Policy:
        rules = dict(self.rules)
        rules[category] = replace(rules.get(category, CategoryRule(None, None)), review=review, act=act)
        return replace(self, rules=rules)

    def with_extra_rules(self, extra: Mapping[str, CategoryRule]) -> Policy:
        """Add rules for categories this policy has none for (custom classifier categories)."""
        added = {name: rule for name, rule in extra.items() if name not in self.rules}
        return replace(self, rules={**self.rules, **added}) if added else self


DEFAULT_POLICY: Final = Policy(
    rules={
        "sexual_explicit": CategoryRule(review=0.6, act=0.85),
        # Swimwear and underwear photos land here: moderators are told, nothing is removed.
        "suggestive": CategoryRule(review=0.7, act=None, review_action=Action.ALERT),
        "violence_graphic": CategoryRule(review=0.7, act=0.9),
        "violence": CategoryRule(review=0.8, act=None, review_action=Action.ALERT),
        # A self-harm post is a person who may need help: alert, never delete on a score.
        "self_harm": CategoryRule(review=0.5, act=None, review_action=Action.ALERT),
    }
)


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


def unchecked_decision(policy: Policy, *, subject: str, size: tuple[int, int] | None) -> Decision | None:
    """What the policy does with a post whose ``subject`` ("image", "animation") was too large to check.

    None when the guild only wants it logged.
    """
    if policy.unchecked_action is Action.NONE:
        return None
    return Decision(
        level=Level.REVIEW,
        action=policy.unchecked_action,
        reason=f"{too_large_to_check(subject, size)}; please look at it",
    )


def too_large_to_check(subject: str, size: tuple[int, int] | None) -> str:
    """ "image too large for Lumi to check (10000×5000 px)": the size is left out when unknown."""
    shown = f" ({size[0]}×{size[1]} px)" if size and size[0] > 0 and size[1] > 0 else ""
    return f"{subject} too large for Lumi to check{shown}"


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


# -- parsing and validation --------------------------------------------------------------------------

_TOP_KEYS: Final = {
    "categories",
    "review_action",
    "auto_action",
    "timeout_on_auto_action",
    "timeout_minutes",
    "exempt_nsfw_channels",
    "repeat_matching",
    "repeat_max_distance",
    "unchecked_action",
}
_RULE_KEYS: Final = {"review", "act", "review_action"}


def parse_policy(stored: Mapping[str, Any] | None, *, base: Policy = DEFAULT_POLICY) -> Policy:
    """Merge a guild's stored overrides over ``base``; raise ``PolicyError`` naming every bad value."""
    if not stored:
        return base
    if not isinstance(stored, Mapping):
        raise PolicyError("the moderation policy must be a JSON object")
    problems: list[str] = []
    unknown = sorted(set(stored) - _TOP_KEYS)
    if unknown:
        problems.append(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_TOP_KEYS))}")
    rules = dict(base.rules)
    categories = stored.get("categories", {})
    if not isinstance(categories, Mapping):
        problems.append("categories must be an object of category name -> thresholds")
        categories = {}
    for name, raw in categories.items():
        if name not in CATEGORIES:
            problems.append(f"unknown category {name!r}; known: {', '.join(CATEGORIES)}")
            continue
        rule = _parse_rule(name, raw, rules.get(name, CategoryRule(None, None)), problems)
        if rule is not None:
            rules[name] = rule
    values: dict[str, Any] = {}
    if "review_action" in stored:
        values["review_action"] = _parse_action(
            "review_action", stored["review_action"], _REVIEW_ACTIONS, problems
        )
    if "auto_action" in stored:
        values["auto_action"] = _parse_action("auto_action", stored["auto_action"], _AUTO_ACTIONS, problems)
    if "unchecked_action" in stored:
        values["unchecked_action"] = _parse_action(
            "unchecked_action", stored["unchecked_action"], _UNCHECKED_ACTIONS, problems
        )
    for key in ("timeout_on_auto_action", "exempt_nsfw_channels", "repeat_matching"):
        if key in stored:
            if isinstance(stored[key], bool):
                values[key] = stored[key]
            else:
                problems.append(f"{key} must be true or false (got {stored[key]!r})")
    if "timeout_minutes" in stored:
        values["timeout_minutes"] = _parse_int(
            "timeout_minutes", stored["timeout_minutes"], 1, _MAX_TIMEOUT_MINUTES, problems
        )
    if "repeat_max_distance" in stored:
        values["repeat_max_distance"] = _parse_int(
            "repeat_max_distance", stored["repeat_max_distance"], 0, 16, problems
        )
    if problems:
        raise PolicyError("invalid moderation policy: " + "; ".join(problems))
    return replace(base, rules=rules, **values)


def _parse_rule(name: str, raw: object, current: CategoryRule, problems: list[str]) -> CategoryRule | None:
    if not isinstance(raw, Mapping):
        problems.append(f'{name} must be an object like {{"review": 0.5, "act": 0.8}}')
        return None
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        problems.append(f"{name}: unknown key(s) {', '.join(unknown)}; known: review, act, review_action")
    before = len(problems)
    review = (
        _parse_threshold(f"{name}.review", raw["review"], problems) if "review" in raw else current.review
    )
    act = _parse_threshold(f"{name}.act", raw["act"], problems) if "act" in raw else current.act
    review_action = current.review_action
    if "review_action" in raw:
        review_action = (
            None
            if raw["review_action"] is None
            else _parse_action(f"{name}.review_action", raw["review_action"], _REVIEW_ACTIONS, problems)
        )
    if len(problems) > before:
        return None
    if review is not None and act is not None and act < review:
        problems.append(
            f"{name}: the auto-action threshold ({act:g}) must not be below the review threshold ({review:g})"
        )
        return None
    return CategoryRule(review=review, act=act, review_action=review_action)


def _parse_threshold(name: str, value: object, problems: list[str]) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.append(f"{name} must be a number between 0 and 1, or null to turn it off (got {value!r})")
        return None
    if not 0.0 <= float(value) <= 1.0:
        problems.append(f"{name} must be between 0 and 1 (got {value:g})")
        return None
    return float(value)


def _parse_action(name: str, value: object, allowed: tuple[Action, ...], problems: list[str]) -> Action:
    choices = ", ".join(action.value for action in allowed)
    if isinstance(value, str) and value in {action.value for action in allowed}:
        return Action(value)
    problems.append(f"{name} must be one of {choices} (got {value!r})")
    return allowed[0]


def _parse_int(name: str, value: object, low: int, high: int, problems: list[str]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(f"{name} must be a whole number from {low} to {high} (got {value!r})")
        return low
    return value


def policy_to_json(policy: Policy, *, base: Policy = DEFAULT_POLICY) -> dict[str, Any]:
    """Only what differs from ``base``, so that later changes to the defaults reach every guild."""
    result: dict[str, Any] = {}
    categories: dict[str, Any] = {}
    for name, rule in policy.rules.items():
        default = base.rules.get(name, CategoryRule(None, None))
        changed: dict[str, Any] = {}
        if rule.review != default.review:
            changed["review"] = rule.review
        if rule.act != default.act:
            changed["act"] = rule.act
        if rule.review_action != default.review_action:
            changed["review_action"] = rule.review_action.value if rule.review_action else None
        if changed:
            categories[name] = changed
    if categories:
        result["categories"] = categories
    for key in sorted(_TOP_KEYS - {"categories"}):
        value, default_value = getattr(policy, key), getattr(base, key)
        if value != default_value:
            result[key] = value.value if isinstance(value, Action) else value
    return result


def describe_policy(policy: Policy) -> list[str]:
    """One line per category and per setting, for `/moderation status` and `lumi scan`."""

    def shown(label: str, value: float | None) -> str:
        return f"{label} off" if value is None else f"{label} ≥ {value:.2f}"

    lines = []
    for name, rule in policy.rules.items():
        action = (rule.review_action or policy.review_action).value
        lines.append(f"{name}: {shown('review', rule.review)} ({action}), {shown('auto-action', rule.act)}")
    timeout = f"{policy.timeout_minutes} min" if policy.timeout_on_auto_action else "off"
    lines.append(f"auto-action: {policy.auto_action.value}, timeout on auto-action: {timeout}")
    repeat = f"on (distance ≤ {policy.repeat_max_distance})" if policy.repeat_matching else "off"
    lines.append(f"repeat matching: {repeat}; NSFW channels exempt: {policy.exempt_nsfw_channels}")
    unchecked = _UNCHECKED_WORDS.get(policy.unchecked_action, policy.unchecked_action.value)
    lines.append(f"images too large to check: {unchecked}")
    return lines
