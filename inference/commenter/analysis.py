"""Korean morphological analysis of comments (kiwipiepy's analyser, whose model ships in its package).

One analysis per comment serves both checks that guard the comment model's output: whether the text is
well-formed Korean (`wellformed`) and which objects it names (`fidelity`): an object name counts only
where it starts and ends on morpheme boundaries, so "공" (ball) is not found inside "공포" (fear).
The analyser takes ~1.5 s to load, so it is built once per process and shared (it is thread-safe for
reading).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Morpheme", "MorphemeAnalyser", "shared_analyser"]


@dataclass(frozen=True)
class Morpheme:
    form: str
    # Sejong-style tag: NNG noun, JKS subject particle, EF sentence-final ending, SF punctuation, ...
    tag: str
    start: int
    end: int
    # True when the analyser guessed a word that is not in its dictionary.
    oov: bool


class MorphemeAnalyser:
    """Morphemes of a text; `extra_nouns` (the object table) are known words, never "unknown"."""

    def __init__(self, extra_nouns: Iterable[str] = ()) -> None:
        from kiwipiepy import Kiwi

        # The local CoNg model: about twice as fast here as the default (global) one, with the same
        # verdicts on the training comments. The typo and multi-word dictionaries are left out: they
        # took ~2.5 of the ~4 s a first analysis cost, and a misspelling should read as unknown.
        self._kiwi: Any = Kiwi(model_type="cong", load_typo_dict=False, load_multi_dict=False)
        # Each word of a name too: "카세트 덱" must not make "덱" an unknown word.
        words = {word for noun in extra_nouns for word in (noun.replace(" ", ""), *noun.split())}
        for word in sorted(words):
            if word and any("가" <= char <= "힣" for char in word):
                self._kiwi.add_user_word(word, "NNG")

    def analyse(self, text: str) -> list[Morpheme]:
        return [
            Morpheme(token.form, token.tag, token.start, token.start + token.len, bool(token.oov))
            for token in self._kiwi.tokenize(text)
        ]


_lock = threading.Lock()
_shared: MorphemeAnalyser | None = None


def shared_analyser() -> MorphemeAnalyser:
    """The process's analyser, knowing the object table's Korean names (loaded on first use)."""
    global _shared
    with _lock:
        if _shared is None:
            from inference.commenter.fidelity import object_names

            _shared = MorphemeAnalyser(object_names().korean_words())
            # The analyser builds part of its model on the first text (~1 s): pay it here, at load
            # time, not in the first comment a user waits for.
            _shared.analyse("사진이 멋져요!")
        return _shared
