"""Prompt checks with the real English profanity model and the built-in word lists."""

from __future__ import annotations

import pytest

from bot.services.generate3d.prompts.check import PromptChecker, PromptProblem


@pytest.fixture(scope="module")
def checker() -> PromptChecker:
    return PromptChecker(extra_blocked_words=["gorefest", "금지어"])


@pytest.mark.parametrize(
    "prompt",
    [
        "a small wooden treasure chest with iron bands",
        "a knight fighting a dragon, low poly",
        "a CPU cooler with copper heat pipes",  # "cp" inside a word is not a match
        "귀여운 여우 인형",
        "불이 꺼져 있는 램프",
        "시발점 표지판",  # 시발 inside the ordinary word 시발점 (starting point)
        "껌을 씹는 소년 피규어",
    ],
)
async def test_ordinary_prompts_pass(checker: PromptChecker, prompt: str) -> None:
    verdict = await checker.check(prompt)
    assert verdict.allowed, verdict


@pytest.mark.parametrize(
    ("prompt", "matched"),
    [
        ("a naked woman statue", "naked"),
        ("F.U.C.K this robot", "fuck"),
        ("ＰＯＲＮ poster", "porn"),  # full-width letters
        ("p0rn statue", "porn"),  # digit look-alike
        ("시1발 로봇", "시발"),  # a digit wedged between syllables
        ("개새끼 인형", "개새끼"),
        ("a gorefest diorama", "gorefest"),  # the operator's own list
        ("금지어 조각상", "금지어"),
    ],
)
async def test_blocked_words_are_found(checker: PromptChecker, prompt: str, matched: str) -> None:
    verdict = await checker.check(prompt)
    assert not verdict.allowed
    assert verdict.problem is PromptProblem.BLOCKED_WORD and verdict.matched == matched
    assert verdict.is_abuse and "Rephrase" in verdict.user_message


async def test_the_profanity_model_catches_what_the_list_misses(checker: PromptChecker) -> None:
    verdict = await checker.check("you stupid idiot piece of garbage")
    assert verdict.problem is PromptProblem.PROFANITY
    assert verdict.profanity_score is not None and verdict.profanity_score >= 0.97


async def test_length_and_emptiness(checker: PromptChecker) -> None:
    empty = await checker.check("   ")
    assert empty.problem is PromptProblem.EMPTY and not empty.is_abuse
    long = await checker.check("a" * 601)
    assert long.problem is PromptProblem.TOO_LONG and "601" in long.user_message


def test_word_check_needs_no_model() -> None:
    quick = PromptChecker(use_profanity_model=False)
    assert quick.model_ready
    assert quick.check_words("a naked statue").problem is PromptProblem.BLOCKED_WORD
    assert quick.check_words("a teapot").allowed
