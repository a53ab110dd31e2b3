"""A guild's moderation policy as stored: only what the guild changed, validated when read back.

A guild stores only what it changed (`GuildSettings.moderation_policy`, a JSON object); `parse_policy`
merges that over `DEFAULT_POLICY` and rejects bad values with messages a moderator can act on, and
`policy_to_json` writes a policy back as its differences from the defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from bot.services.moderation.policy import CATEGORIES, DEFAULT_POLICY, Action, CategoryRule, Policy

__all__ = ["PolicyError", "parse_policy", "policy_to_json"]


class PolicyError(ValueError):
    """A policy value a moderator entered is invalid; the message says which and what is allowed."""


_MAX_TIMEOUT_MINUTES: Final = 28 * 24 * 60  # Discord's longest timeout
_REVIEW_ACTIONS: Final = (Action.HOLD, Action.ALERT)
_AUTO_ACTIONS: Final = (Action.DELETE, Action.HOLD, Action.ALERT)
# Deleting outright is not offered: nothing is known about the image, so a moderator must see it.
_UNCHECKED_ACTIONS: Final = (Action.ALERT, Action.HOLD, Action.NONE)
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
