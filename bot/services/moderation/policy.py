"""Moderation policy: the categories, a guild's thresholds and actions, and the defaults. Pure data.

Scores are probabilities in [0, 1]; each category has a *review* threshold (hold or alert, a moderator
decides) and an *auto-action* threshold (Lumi acts at once, then tells the moderators). How a guild's
stored changes become a `Policy` is in `policy_json`; what a policy decides for one image is in
`decisions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

__all__ = [
    "CATEGORIES",
    "DEFAULT_POLICY",
    "Action",
    "CategoryRule",
    "Policy",
    "describe_policy",
]


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
    # A post with an image Lumi could not check although Discord still shows it to everyone: too large
    # to decode or download, past the per-post limit, or unreadable to Lumi (damaged, unknown format).
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
    lines.append(f"images Lumi cannot check (too large or unreadable): {unchecked}")
    return lines
