"""The last step of local comment writing: drop bad candidates, pick one, name every object.

The comment model draws several candidates per label list (`decoding`), ranked by consensus
(`selection`). Before a candidate is shown it must
1. be well-formed Korean (`wellformed`),
2. name no object from Lumi's table that is not among the given labels (`fidelity`);
   a candidate that fails only in some sentences keeps its other sentences,
3. name every given object: the best candidate naming all of them wins, and objects still missing
   are added in a short sentence whose particles agree with the words (`korean.attach`).
When no candidate survives, a label list with objects gets the sentence naming them alone, and one with
only an emotion gets "": the caller falls back (the comment service writes the template comment, which
obeys the same rules).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from inference.commenter.analysis import MorphemeAnalyser
from inference.commenter.fidelity import ObjectNames, object_word
from inference.commenter.korean import attach
from inference.commenter.selection import candidate_scores, label_coverage
from inference.commenter.wellformed import malformed_reasons

__all__ = ["CandidateCheck", "CommentGuard", "GuardStats", "missing_objects_sentence"]

# A sentence ends at its punctuation and the emojis right after it.
_SENTENCE: Final = re.compile(r"[^!?.~…]*[!?.~…]+[^\w\s]*\s*|[^!?.~…]+$")

# Sentences that name objects the model left out: {subject} carries 이/가, {with} carries 과/와.
_MISSING_OBJECT_SENTENCES: Final = (
    "{subject} 눈에 띄네요! ✨",
    "{subject} 사진에 포인트가 되네요! 👍",
    "{with} 함께라 더 특별해 보여요! 💫",
)


@dataclass(frozen=True)
class CandidateCheck:
    text: str
    malformed: list[str]
    foreign: list[str]

    @property
    def ok(self) -> bool:
        return not self.malformed and not self.foreign


@dataclass
class GuardStats:
    """How comments were reached (benches read it: how much the model's own text carries)."""

    comments: int = 0
    # A candidate passed as written / only after sentences were dropped / none could be used.
    as_written: int = 0
    repaired: int = 0
    replaced: int = 0
    # Comments that got the sentence naming objects the model left out.
    objects_added: int = 0


def _listed(words: Sequence[str], particle: str) -> str:
    """ "A, B와 C" with `particle` agreeing with the last word."""
    if len(words) == 1:
        return attach(words[0], particle)
    head = [*words[:-2], attach(words[-2], "와")]
    return f"{', '.join(head)} {attach(words[-1], particle)}"


def missing_objects_sentence(words: Sequence[str], seed: str) -> str:
    """A sentence naming `words` (none of them table names it should not contain)."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    template = _MISSING_OBJECT_SENTENCES[digest[0] % len(_MISSING_OBJECT_SENTENCES)]
    return template.format(subject=_listed(words, "이"), **{"with": _listed(words, "과")})


class CommentGuard:
    """Checks and chooses comments; `analyser` and `names` are shared, read-only, across threads."""

    def __init__(self, analyser: MorphemeAnalyser, names: ObjectNames) -> None:
        self.analyser = analyser
        self.names = names
        self.stats = GuardStats()

    def check(self, text: str, objects: Sequence[str]) -> CandidateCheck:
        morphemes = self.analyser.analyse(text)
        return CandidateCheck(
            text,
            malformed_reasons(text, morphemes),
            self.names.foreign_korean(text, morphemes, objects),
        )

    def repair(self, text: str, objects: Sequence[str]) -> str:
        """`text` without the sentences that fail a check ("" when none is left)."""
        kept = [
            sentence.strip()
            for sentence in _SENTENCE.findall(text)
            if sentence.strip() and self.check(sentence.strip(), objects).ok
        ]
        joined = " ".join(kept)
        return joined if joined and self.check(joined, objects).ok else ""

    def choose(
        self,
        candidates: Sequence[str],
        objects: Sequence[str],
        *,
        coverage_weight: float,
        length_weight: float,
        seed: str,
    ) -> str:
        """The comment for one label list, or "" when no candidate can be made to pass."""
        scores = candidate_scores(
            candidates, objects, coverage_weight=coverage_weight, length_weight=length_weight
        )
        # Naming every object first, then consensus; a candidate is only analysed when it is reached.
        order = sorted(
            (index for index, text in enumerate(candidates) if text),
            key=lambda index: (-(label_coverage(candidates[index], objects) >= 1.0), -scores[index], index),
        )
        self.stats.comments += 1
        chosen = next((candidates[i] for i in order if self.check(candidates[i], objects).ok), "")
        self.stats.as_written += bool(chosen)
        if not chosen:
            repaired = (self.repair(candidates[index], objects) for index in order)
            chosen = next((text for text in repaired if text), "")
            self.stats.repaired += bool(chosen)
        if not chosen:
            self.stats.replaced += 1
            # Nothing the model wrote can be shown: a photo with objects still gets the sentence that
            # names them; one with only an emotion gets "" and the caller's template.
            words = [object_word(label) for label in objects]
            return missing_objects_sentence(words, seed) if words else ""
        missing = [object_word(label) for label in objects if label_coverage(chosen, [label]) == 0.0]
        if missing:
            self.stats.objects_added += 1
            chosen = f"{chosen} {missing_objects_sentence(missing, seed)}"
        return chosen
