"""Choosing one comment among sampled candidates.

Minimum-Bayes-risk selection picks the candidate that agrees most with the others (character n-gram
overlap, the quantity BLEU rewards): a single sample can wander, the consensus rarely does. A bonus
for naming the photo's objects counters the model's habit of dropping labels from long lists.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

MAX_ORDER = 4


@dataclass(frozen=True)
class _Profile:
    length: int
    ngrams: tuple[Counter[str], ...]


def _profile(text: str) -> _Profile:
    return _Profile(
        length=len(text),
        ngrams=tuple(
            Counter(text[i : i + n] for i in range(len(text) - n + 1)) for n in range(1, MAX_ORDER + 1)
        ),
    )


def char_similarity(hypothesis: _Profile, reference: _Profile) -> float:
    """Smoothed sentence-level character BLEU-4 of `hypothesis` against `reference` (0..1)."""
    if hypothesis.length == 0 or reference.length == 0:
        return 0.0
    log_precision = 0.0
    for order, (hyp_counts, ref_counts) in enumerate(
        zip(hypothesis.ngrams, reference.ngrams, strict=True), 1
    ):
        matches = sum(min(count, ref_counts[gram]) for gram, count in hyp_counts.items())
        total = max(hypothesis.length - order + 1, 0)
        # Add-one smoothing keeps short candidates from scoring exactly zero on 4-grams.
        log_precision += math.log((matches + 1) / (total + 1)) / MAX_ORDER
    brevity = (
        1.0 if hypothesis.length >= reference.length else math.exp(1 - reference.length / hypothesis.length)
    )
    return brevity * math.exp(log_precision)


def label_coverage(text: str, objects: Sequence[str]) -> float:
    """Share of object labels named in `text`; spacing is ignored ("패션 액세서리" = "패션액세서리")."""
    if not objects:
        return 0.0
    squashed = "".join(text.split())
    return sum(1 for label in objects if "".join(label.split()) in squashed) / len(objects)


def mentions_any(text: str, objects: Sequence[str]) -> bool:
    return label_coverage(text, objects) > 0.0


def select_candidate(candidates: Sequence[str], objects: Sequence[str], *, coverage_weight: float) -> int:
    """Index of the chosen candidate: expected similarity to the other candidates, plus
    `coverage_weight` times the share of object labels it names. Ties go to the earliest candidate."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    profiles = [_profile(text) for text in candidates]
    unique: dict[str, int] = {}
    for index, text in enumerate(candidates):
        unique.setdefault(text, index)
    multiplicity = Counter(candidates)
    others = len(candidates) - 1
    best_index, best_score = 0, -math.inf
    for text, index in unique.items():
        if not text:
            continue
        if others:
            agreement = sum(
                multiplicity[other] * char_similarity(profiles[index], profiles[other_index])
                for other, other_index in unique.items()
                if other != text
            )
            # Identical copies agree perfectly: a candidate sampled twice is strong consensus.
            agreement += multiplicity[text] - 1
            expected = agreement / others
        else:
            expected = 0.0
        score = expected + coverage_weight * label_coverage(text, objects)
        if score > best_score:
            best_index, best_score = index, score
    return best_index
