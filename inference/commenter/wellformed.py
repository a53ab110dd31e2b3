"""Is a comment well-formed Korean? Flags what a reader notices first in a generated comment.

- repeated fragments: a sentence or a run of three words written twice ("차도 멋져요! 차도 멋져요!"),
  or a word twice in a row;
- dangling particles or endings: a sentence that stops on a particle, a determiner or an adnominal
  ending ("환하게 뭘", "어떤 꽤 독특하네요": 어떤 wants a noun), or a comment that stops mid-clause;
- emojis glued into a sentence: an emoji written against the word after it ("멋져😊요") or against
  anything but a sentence's final ending ("고양이가😊 귀여워요"). After the final ending ("멋져요😊") it
  reads as SNS style and passes; the training comments never glue an emoji to Hangul at all;
- unknown words: syllables the analyser cannot place in its dictionary (the comment model writes
  subword pieces and can glue a wrong pair together).

The rules were calibrated on the training comments, which written by people (and an LLM) are almost
never flagged; see `bench/comments_quality.py` for the shares.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from inference.commenter.analysis import Morpheme

__all__ = ["malformed_reasons"]

# Tags that never end a sentence: particles (J*), determiners, prefixes, pre-final and adnominal
# endings. Connective endings (EC) may close a casual sentence before "!" but not the whole comment.
_NEVER_FINAL: Final = ("J", "MM", "XPN", "EP", "ETM", "ETN", "VCP")
_TRAILING: Final = frozenset({"SF", "SP", "SS", "SSO", "SSC", "SE", "SO", "SW", "W_EMOJI", "SH", "SL", "SN"})
# What may follow a determiner or an adnominal ending: the rest of a noun phrase (a noun, a number,
# another modifier: "어떤 좋은 일"), never punctuation, a particle, an ending or an adverb ("어떤 꽤").
_NOUN_PHRASE: Final = ("N", "SN", "MM", "XPN", "XR", "V", "SL", "SH")
_WORD: Final = re.compile(r"[^\s!?.~,…]+")
_SENTENCE: Final = re.compile(r"[^!?.~…]+")


def malformed_reasons(text: str, morphemes: Sequence[Morpheme]) -> list[str]:
    """Why `text` is not well-formed Korean (an empty list when it is)."""
    if not text.strip():
        return ["empty comment"]
    reasons: list[str] = []
    repeated = _repeated_fragment(text)
    if repeated:
        reasons.append(f"repeated fragment {repeated!r}")
    unknown = [m.form for m in morphemes if m.oov and m.tag.startswith("N") and _is_hangul(m.form)]
    if unknown:
        reasons.append(f"unknown word {unknown[0]!r}")
    dangling = _dangling(morphemes)
    if dangling:
        reasons.append(dangling)
    glued = _glued_emoji(morphemes)
    if glued:
        reasons.append(glued)
    return reasons


def _glued_emoji(morphemes: Sequence[Morpheme]) -> str | None:
    for index, emoji in enumerate(morphemes):
        if emoji.tag != "W_EMOJI":
            continue
        before = morphemes[index - 1] if index else None
        after = morphemes[index + 1] if index + 1 < len(morphemes) else None
        if after is not None and after.start == emoji.end and after.tag not in _TRAILING:
            return f"emoji {emoji.form!r} is glued to the word after it ({after.form!r})"
        if (
            before is not None
            and before.end == emoji.start
            and before.tag not in _TRAILING
            and before.tag != "EF"
            and not (before.tag == "JX" and before.form == "요")
        ):
            return f"emoji {emoji.form!r} is glued into the sentence after {before.form!r} ({before.tag})"
    return None


def _is_hangul(text: str) -> bool:
    return any("가" <= char <= "힣" or "ㄱ" <= char <= "ㅣ" for char in text)


def _repeated_fragment(text: str) -> str | None:
    sentences = [" ".join(_WORD.findall(part)) for part in _SENTENCE.findall(text)]
    seen: set[str] = set()
    for sentence in sentences:
        if len(sentence) >= 4 and sentence in seen:
            return sentence
        seen.add(sentence)
    words: list[str] = _WORD.findall(text)
    # Two-word phrases recur in good comments ("것 같아요", "책을 읽고"); three words in a row do not.
    runs: set[tuple[str, ...]] = set()
    for index in range(len(words) - 1):
        if words[index] == words[index + 1] and len(words[index]) >= 2 and _is_hangul(words[index]):
            return words[index]
        run = tuple(words[index : index + 3])
        if len(run) == 3 and run in runs:
            return " ".join(run)
        runs.add(run)
    return None


def _never_final(morpheme: Morpheme) -> bool:
    # The polite 요 is tagged as a particle but closes sentences ("건가요?").
    return morpheme.tag.startswith(_NEVER_FINAL) and not (morpheme.tag == "JX" and morpheme.form == "요")


def _dangling(morphemes: Sequence[Morpheme]) -> str | None:
    words = [m for m in morphemes if m.tag not in _TRAILING]
    if not words:
        return None
    for index, morpheme in enumerate(morphemes):
        following = morphemes[index + 1] if index + 1 < len(morphemes) else None
        modifies = following is not None and following.tag.startswith(_NOUN_PHRASE)
        if morpheme.tag in ("MM", "ETM") and not modifies:
            return f"{morpheme.form!r} ({morpheme.tag}) is not followed by a noun"
        if following is not None and following.tag == "SF" and _never_final(morpheme):
            return f"a sentence stops on {morpheme.form!r} ({morpheme.tag})"
    last = words[-1]
    if _never_final(last) or last.tag == "EC":
        return f"the comment stops on {last.form!r} ({last.tag})"
    return None
