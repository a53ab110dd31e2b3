"""Object slots: the comment model learns how to mention an object, not which object it is.

A delexicalised model is trained on comments whose given objects are replaced by slot tokens
(`<obj1>`, `<obj2>`, ... in the order of the object labels), and its prompt carries the same slot
before each object's name ("<obj1> 헤드폰"), so what it knows about mentioning an object carries over to
objects it never saw in a comment. After decoding, `fill` puts each label's word back in place of its
slot and gives the particle after it the form that agrees with the word (`korean.attach`): the model
may have learnt "<obj1>이" from 고양이 and be filling in 케이크.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from inference.commenter.data import EMOTION_LABELS, MAX_LABELS, CommentPair, object_labels, prompt_order
from inference.commenter.fidelity import object_word
from inference.commenter.korean import PARTICLES, attach, final_consonant

__all__ = [
    "SLOT_TOKENS",
    "delexicalise",
    "delexicalise_comment",
    "english_names",
    "fill",
    "slot_prompt",
]

SLOT_TOKENS: Final = tuple(f"<obj{index}>" for index in range(1, MAX_LABELS + 1))
_SLOT: Final = re.compile(r"<obj([1-9][0-9]?)>")
_HANGUL_RUN: Final = re.compile(r"[가-힣]*")

# What may follow an object's name inside the same word when the name is a whole noun there:
# particles, the copula and the plural. "배" is a boat in "배가" and "배를", not in "배경".
_NOUN_ENDINGS: Final = (
    "이", "가", "을", "를", "은", "는", "과", "와", "의", "도", "에", "로", "으로", "이나", "나", "랑",
    "이랑", "만", "처럼", "보다", "까지", "부터", "한테", "께", "네", "예요", "였", "라", "들", "죠", "야",
)  # fmt: skip
# Particles that change form, longest first so "으로" is read before "으".
_VARIABLE: Final = sorted([*PARTICLES, "이랑", "랑"], key=len, reverse=True)
# Copula endings written straight after a word ending in a vowel ("나무네요"); a word ending in a
# consonant needs 이 before them ("헤드폰이네요").
_COPULA_AFTER_VOWEL: Final = ("네요", "죠", "지요", "라서", "라고", "라니", "랍니다", "라", "야", "였")


def _name_pattern(word: str) -> re.Pattern[str]:
    # A space inside a name may be left out ("패션액세서리"), and the name must start a word.
    body = r"\s?".join(re.escape(part) for part in word.split())
    return re.compile(rf"(?<![가-힣A-Za-z]){body}", re.IGNORECASE)


def _whole_noun(text: str, end: int) -> bool:
    rest = _HANGUL_RUN.match(text, end)
    tail = rest.group(0) if rest else ""
    return not tail or tail.startswith(_NOUN_ENDINGS)


def delexicalise_comment(comment: str, names: Sequence[Sequence[str]]) -> str:
    """`comment` with every whole mention of object `i`'s names (Korean word, English name) replaced
    by slot `i`; longer names first, so "야구 글러브" is one slot and not a slot after "야구"."""
    spans: list[tuple[int, int, int]] = []
    ordered = sorted(
        ((word, index) for index, words in enumerate(names) for word in words if word),
        key=lambda item: -len(item[0]),
    )
    for word, index in ordered:
        for match in _name_pattern(word).finditer(comment):
            start, end = match.span()
            overlaps = any(start < other_end and other_start < end for other_start, other_end, _ in spans)
            if not overlaps and _whole_noun(comment, end):
                spans.append((start, end, index))
    out = comment
    for start, end, index in sorted(spans, reverse=True):
        out = out[:start] + SLOT_TOKENS[index] + out[end:]
    return out


def slot_prompt(labels: Sequence[str]) -> tuple[str, ...]:
    """The prompt's labels for a slot model: emotions as they are, then "<objN> word" per object."""
    ordered = prompt_order(labels)
    objects = object_labels(ordered)
    emotions = [label for label in ordered if label in EMOTION_LABELS]
    return (*emotions, *(f"{SLOT_TOKENS[i]} {object_word(label)}" for i, label in enumerate(objects)))


def english_names() -> dict[str, str]:
    """Korean object word -> English name, from Lumi's object table."""
    from inference.labels import oiv7_vocabulary

    return {object_word(item.ko): item.en for item in oiv7_vocabulary().classes}


def delexicalise(pair: CommentPair, english: dict[str, str]) -> CommentPair:
    """A training pair for a slot model: the slot prompt and the delexicalised comment. `english`
    maps Korean object words to their English names (mentions of either are slotted)."""
    objects = object_labels(prompt_order(pair.labels))[:MAX_LABELS]
    names = [[object_word(label), english.get(object_word(label), "")] for label in objects]
    return CommentPair(slot_prompt(pair.labels), delexicalise_comment(pair.comment, names))


def _agreeing(word: str, tail: str) -> tuple[str, int]:
    """The text that follows `word` in place of the first characters of `tail`, and how many of
    them it replaces, so that a particle or copula written after the slot agrees with `word`."""
    final = final_consonant(word)
    for particle in _VARIABLE:
        if not tail.startswith(particle):
            continue
        after = tail[len(particle) :]
        if particle in ("이", "가") and after[:1] and "가" <= after[0] <= "힣":
            break  # the copula ("이네요") or a word of its own, handled below
        if particle in ("이랑", "랑"):
            form = "랑" if final in (0, None) else "이랑"
            return form, len(particle)
        return attach(word, particle)[len(word) :], len(particle)
    if tail.startswith(("이에요", "예요")):
        return ("이에요" if final else "예요"), 3 if tail.startswith("이에요") else 2
    if tail.startswith("이") and tail[1:].startswith(_COPULA_AFTER_VOWEL):
        return ("이" if final else ""), 1
    if tail.startswith(_COPULA_AFTER_VOWEL) and final:
        return "이", 0
    return "", 0


def fill(text: str, objects: Sequence[str]) -> str | None:
    """`text` with slot `i` replaced by object `i`'s word and particles made to agree; None when the
    text names a slot that has no object (the candidate cannot be used)."""
    words = [object_word(label) for label in objects]
    out: list[str] = []
    position = 0
    for match in _SLOT.finditer(text):
        index = int(match.group(1)) - 1
        if index >= len(words):
            return None
        word = words[index]
        out.append(text[position : match.start()])
        out.append(word)
        replacement, consumed = _agreeing(word, text[match.end() :])
        out.append(replacement)
        position = match.end() + consumed
    out.append(text[position:])
    return "".join(out)
