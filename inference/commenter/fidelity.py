"""Which objects a comment names: the photo's own, and any other name from Lumi's object table.

A comment that praises a closet under a cat photo is the failure a user notices first, so the comment
model's output is checked against the whole table (601 Open Images classes, Korean and English names),
not only against the labels it was given. A Korean name counts where it starts and ends on morpheme
boundaries and its last morpheme is a noun ("공" is a ball in "공이 굴러가요", not in "공포"); an
English name counts as a whole word, plural included. The last word of a longer name counts too
("모니터" names the class 컴퓨터 모니터, "수납장" the class 욕실 수납장) unless it is a word as general as
"제품" or "용품", and it is no foreign name when it is a word of a given label. Classes the table
marks ``generic`` (people and their body parts) are never labels and do not count: a face is implied
by the emotion it shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from inference.commenter.analysis import Morpheme
from inference.labels import oiv7_vocabulary

__all__ = ["ObjectNames", "object_names", "object_word"]

_PARENTHETICAL = re.compile(r"\s*\([^)]*\)")
# Last words of longer names that say what kind of thing it is, not which: "자동차 부품" is a car part,
# but "부품" alone names no object of the photo (nor does a one-syllable word such as "통" or "채").
_GENERAL_HEADS = frozenset(
    {
        "부품",
        "제품",
        "용품",
        "장비",
        "제작",
        "기기",
        "관리",
        "기구",
        "수단",
        "기계",
        "액세서리",
        "에이드",
        "제이",
    }
)


def object_word(label: str) -> str:
    """The label as a word in a sentence: "박쥐 (동물)" reads "박쥐"."""
    return _PARENTHETICAL.sub("", label).strip() or label.strip()


def _alternation(words: Iterable[str]) -> str:
    # Longest first, so "야구 글러브" wins over "글러브" at the same place; a space may be left out.
    ordered = sorted(set(words), key=len, reverse=True)
    return "|".join(r"\s?".join(re.escape(part) for part in word.split()) for word in ordered)


@dataclass(frozen=True)
class _Span:
    word: str
    start: int
    end: int


class ObjectNames:
    """Finds object names in comments; built from (Korean, English) name pairs."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        pairs = [(object_word(ko), object_word(en).casefold()) for ko, en in pairs]
        self._korean = sorted({ko for ko, _ in pairs})
        self._english = sorted({en for _, en in pairs})
        self._canonical = {"".join(word.split()): word for word in self._korean}
        single = {word for word in self._korean if " " not in word}
        self._heads = sorted(
            {
                word.split()[-1]
                for word in self._korean
                if " " in word and len(word.split()[-1]) >= 2 and word.split()[-1] not in _GENERAL_HEADS
            }
            - single
        )
        self._korean_pattern = re.compile(_alternation([*self._korean, *self._heads]))
        self._english_pattern = re.compile(rf"\b(?:{_alternation(self._english)})(?:e?s)?\b", re.IGNORECASE)

    def korean_words(self) -> list[str]:
        return list(self._korean)

    def korean_named(self, text: str, morphemes: Sequence[Morpheme]) -> list[str]:
        """Table names in a Korean `text` (given its morphemes), in order of appearance."""
        return [span.word for span in self._korean_spans(text, morphemes)]

    def foreign_korean(self, text: str, morphemes: Sequence[Morpheme], given: Sequence[str]) -> list[str]:
        """Table names in `text` that are none of the `given` object labels (nor inside one)."""
        allowed = [object_word(label) for label in given]
        taken = [
            (match.start(), match.end())
            for word in allowed
            for match in re.finditer(r"\s?".join(re.escape(part) for part in word.split()), text)
        ]
        squashed_allowed = {"".join(word.split()) for word in allowed}
        # A word of a given label ("모니터" of "컴퓨터 모니터") names that label.
        allowed_parts = {part for word in allowed for part in word.split()}
        return [
            span.word
            for span in self._korean_spans(text, morphemes)
            if "".join(span.word.split()) not in squashed_allowed
            and span.word not in allowed_parts
            and not any(start <= span.start and span.end <= end for start, end in taken)
        ]

    def foreign_english(self, text: str, given: Sequence[str]) -> list[str]:
        """English table names in `text` that are none of the `given` English labels."""
        allowed = {object_word(label).casefold() for label in given}
        found = []
        for match in self._english_pattern.finditer(text):
            word = match.group(0).casefold()
            if word in allowed or word.rstrip("s") in allowed or word.removesuffix("es") in allowed:
                continue
            if not any(word in label for label in allowed):
                found.append(word)
        return found

    def _korean_spans(self, text: str, morphemes: Sequence[Morpheme]) -> list[_Span]:
        starts = {m.start for m in morphemes}
        # Dependent nouns (NNB) are grammar, not things: "하는 게" holds no crab (게).
        noun_ends = {m.end for m in morphemes if m.tag in ("NNG", "NNP", "NR", "SL", "XSN")}
        spans = []
        for match in self._korean_pattern.finditer(text):
            if match.start() in starts and match.end() in noun_ends:
                word = self._canonical.get("".join(match.group(0).split()), match.group(0))
                spans.append(_Span(word, match.start(), match.end()))
        return spans


@cache
def object_names() -> ObjectNames:
    """Names of the object table's classes that can be labels (generic classes left out)."""
    return ObjectNames((item.ko, item.en) for item in oiv7_vocabulary().classes if not item.generic)
