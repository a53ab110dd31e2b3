"""Korean particles that agree with the word before them.

Six particles change form with the last syllable of the word they follow: 이/가, 을/를, 은/는, 과/와,
이나/나 by whether it has a final consonant (batchim), 으로/로 by whether that consonant is anything but
ㄹ. Writing "고양이를" but "케이크을" is the error a Korean reader notices at once, so every word Lumi
puts into a sentence after decoding goes through `attach`.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PARTICLES", "attach", "final_consonant"]

_HANGUL_FIRST: Final = ord("가")
_HANGUL_LAST: Final = ord("힣")
_RIEUL: Final = 8  # index of ㄹ among the 28 final-consonant slots (0 = none)

# Every spelling of a particle, mapped to (after a final consonant, after a vowel).
PARTICLES: Final[dict[str, tuple[str, str]]] = {
    key: pair
    for pair in (("이", "가"), ("을", "를"), ("은", "는"), ("과", "와"), ("으로", "로"), ("이나", "나"))
    for key in pair
}


def final_consonant(word: str) -> int | None:
    """Index of the final consonant of the word's last syllable (0 = none), or None when the word
    does not end in a Hangul syllable (a digit, Latin letters, an emoji)."""
    last = ord(word[-1]) if word else 0
    if not _HANGUL_FIRST <= last <= _HANGUL_LAST:
        return None
    return (last - _HANGUL_FIRST) % 28


def attach(word: str, particle: str) -> str:
    """`word` followed by the form of `particle` (any of its spellings) that agrees with it.

    A word that does not end in Hangul gets both forms, "A(이)가"-style, as Korean writers do when they
    cannot know how the word is read."""
    try:
        after_consonant, after_vowel = PARTICLES[particle]
    except KeyError:
        raise ValueError(f"{particle!r} is not a particle that changes form") from None
    final = final_consonant(word)
    if final is None:
        return f"{word}{after_consonant}({after_vowel})" if after_vowel != "로" else f"{word}(으)로"
    if after_vowel == "로":
        # 으로 after any final consonant except ㄹ: "집으로", but "연필로" like "나무로".
        return word + ("로" if final in (0, _RIEUL) else "으로")
    return word + (after_consonant if final else after_vowel)
