from __future__ import annotations

import pytest

from bot.services.moderation.decisions import (
    Level,
    category_scores,
    could_not_read,
    decide,
    repeat_decision,
    too_large_to_check,
    unchecked_decision,
)
from bot.services.moderation.policy import DEFAULT_POLICY, Action, describe_policy
from bot.services.moderation.policy_json import PolicyError, parse_policy, policy_to_json


def test_everyday_labels_count_for_nothing() -> None:
    scores = category_scores(
        [("FACE_FEMALE", 0.9), ("FEET_EXPOSED", 0.8), ("BELLY_EXPOSED", 0.7), ("MALE_BREAST_EXPOSED", 0.9)],
        open_nsfw=0.01,
    )
    assert scores == {"sexual_explicit": 0.01, "suggestive": 0.01}
    assert decide(scores, DEFAULT_POLICY).level is Level.SAFE


def test_exposed_part_is_explicit_and_covered_part_suggestive() -> None:
    scores = category_scores([("FEMALE_BREAST_EXPOSED", 0.62), ("BUTTOCKS_COVERED", 0.75)], open_nsfw=0.3)
    assert scores["sexual_explicit"] == 0.62
    assert scores["suggestive"] == 0.75


def test_open_nsfw_feeds_both_categories_and_extra_names_are_mapped() -> None:
    scores = category_scores([], open_nsfw=0.55, extra={"violence/graphic": 0.4, "self-harm": 0.2, "x": 1.0})
    assert scores["sexual_explicit"] == scores["suggestive"] == 0.55
    assert scores["violence_graphic"] == 0.4
    assert scores["self_harm"] == 0.2
    assert "x" not in scores


def test_review_band_holds_and_auto_band_deletes() -> None:
    review = decide({"sexual_explicit": 0.7}, DEFAULT_POLICY)
    assert (review.level, review.action, review.category) == (Level.REVIEW, Action.HOLD, "sexual_explicit")
    assert "review threshold 0.60" in review.reason
    act = decide({"sexual_explicit": 0.95, "suggestive": 0.95}, DEFAULT_POLICY)
    assert (act.level, act.action, act.category) == (Level.ACT, Action.DELETE, "sexual_explicit")
    assert not act.timeout_author


def test_suggestive_only_alerts_by_default() -> None:
    decision = decide({"sexual_explicit": 0.1, "suggestive": 0.8}, DEFAULT_POLICY)
    assert (decision.level, decision.action, decision.category) == (Level.REVIEW, Action.ALERT, "suggestive")


def test_the_worst_level_wins_across_categories() -> None:
    decision = decide({"sexual_explicit": 0.55, "violence_graphic": 0.95}, DEFAULT_POLICY)
    assert decision.level is Level.ACT
    assert decision.category == "violence_graphic"


def test_guild_overrides_merge_over_defaults() -> None:
    policy = parse_policy(
        {
            "categories": {"suggestive": {"act": 0.9}, "sexual_explicit": {"review": 0.3}},
            "auto_action": "hold",
            "timeout_on_auto_action": True,
            "timeout_minutes": 30,
        }
    )
    assert policy.rules["suggestive"].review == 0.7
    assert policy.rules["suggestive"].act == 0.9
    assert policy.rules["sexual_explicit"].review == 0.3
    assert policy.rules["sexual_explicit"].act == 0.85
    decision = decide({"suggestive": 0.95}, policy)
    assert (decision.action, decision.timeout_author) == (Action.HOLD, True)
    assert parse_policy(policy_to_json(policy)) == policy
    assert policy_to_json(DEFAULT_POLICY) == {}


def test_null_turns_a_threshold_off() -> None:
    policy = parse_policy({"categories": {"sexual_explicit": {"review": None, "act": None}}})
    assert decide({"sexual_explicit": 1.0}, policy).level is Level.SAFE


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ({"categories": {"sexual_explicit": {"review": 1.5}}}, "review must be between 0 and 1"),
        ({"categories": {"sexual_explicit": {"review": "high"}}}, "must be a number between 0 and 1"),
        ({"categories": {"sexual_explicit": {"review": 0.9, "act": 0.5}}}, "must not be below the review"),
        ({"categories": {"nudity": {"review": 0.5}}}, "unknown category 'nudity'"),
        ({"categories": {"suggestive": {"warn": 0.5}}}, "unknown key(s) warn"),
        ({"auto_action": "ban"}, "auto_action must be one of delete, hold, alert"),
        ({"review_action": "delete"}, "review_action must be one of hold, alert"),
        ({"timeout_minutes": 0}, "timeout_minutes must be a whole number from 1 to 40320"),
        ({"repeat_matching": "yes"}, "repeat_matching must be true or false"),
        ({"unchecked_action": "delete"}, "unchecked_action must be one of alert, hold, none"),
        ({"colour": "red"}, "unknown setting(s) colour"),
    ],
)
def test_bad_values_are_named_in_the_error(stored: dict[str, object], expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(stored)
    assert expected in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy({"auto_action": "ban", "timeout_minutes": -1})
    assert "auto_action" in str(caught.value) and "timeout_minutes" in str(caught.value)


def test_repeat_decision_uses_the_auto_action() -> None:
    policy = parse_policy({"auto_action": "hold"})
    decision = repeat_decision(policy, category="sexual_explicit", case_id=7, distance=2)
    assert (decision.level, decision.action, decision.matched_case_id) == (Level.ACT, Action.HOLD, 7)
    assert "distance 2" in decision.reason


def test_images_too_large_to_check_are_alerted_unless_the_guild_says_otherwise() -> None:
    too_large = too_large_to_check("image", (10_000, 5_000))
    decision = unchecked_decision(DEFAULT_POLICY, unchecked=too_large)
    assert decision is not None
    assert (decision.level, decision.action) == (Level.REVIEW, Action.ALERT)
    assert decision.reason == "image too large for Lumi to check (10000×5000 px); please look at it"
    held = parse_policy({"unchecked_action": "hold"})
    assert policy_to_json(held) == {"unchecked_action": "hold"}
    unknown_size = unchecked_decision(held, unchecked=too_large_to_check("animation", (0, 0)))
    assert unknown_size is not None and unknown_size.action is Action.HOLD
    assert unknown_size.reason == "animation too large for Lumi to check; please look at it"
    # Without a copy of every image (some were never downloaded), holding could not be undone.
    not_held = unchecked_decision(held, unchecked=too_large, can_hold=False)
    assert not_held is not None and not_held.action is Action.ALERT
    assert not_held.reason.startswith(f"{too_large}; please look at it (not held: Lumi has no copy")
    assert unchecked_decision(parse_policy({"unchecked_action": "none"}), unchecked=too_large) is None
    assert (
        "images Lumi cannot check (too large or unreadable): hold the post for review (alert only when "
        "over the download limit)"
    ) in describe_policy(held)


def test_images_lumi_could_not_read_are_named_by_format_and_reason() -> None:
    assert could_not_read("PNG", "corrupt", None) == "PNG image Lumi could not read (damaged or incomplete)"
    assert could_not_read("HEIF", "unsupported_format", (4032, 3024)) == (
        "HEIF image Lumi could not read (a format Lumi cannot decode, 4032×3024 px)"
    )
    assert could_not_read(None, "not_an_image", (800, 600)) == (
        "image Lumi could not read (not a format Lumi recognises, 800×600 px)"
    )


def test_description_lists_every_category() -> None:
    text = "\n".join(describe_policy(DEFAULT_POLICY))
    assert "sexual_explicit: review ≥ 0.60 (hold), auto-action ≥ 0.85" in text
    assert "suggestive: review ≥ 0.70 (alert), auto-action off" in text
