"""Choosing one comment among sampled candidates.

Minimum-Bayes-risk selection picks the candidate that agrees most with the others (character n-gram
overlap, the quantity BLEU rewards): a single sample can wander, the consensus rarely does. A bonus
for naming the photo's objects counters the model's habit of dropping labels from long lists, and a
small bonus for length counters the pull of n-gram overlap towards short, generic candidates (which
BLEU's brevity penalty, and readers, punish).
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


def _matches(first: _Profile, second: _Profile) -> tuple[int, ...]:
    """Clipped n-gram matches per order; symmetric, so each pair of candidates is counted once."""
    if len(first.ngrams[0]) > len(second.ngrams[0]):
        first, second = second, first
    return tuple(
        sum(min(count, other[gram]) for gram, count in mine.items())
        for mine, other in zip(first.ngrams, second.ngrams, strict=True)
    )


def _bleu_from_matches(matches: Sequence[int], hypothesis_length: int, reference_length: int) -> float:
    if hypothesis_length == 0 or reference_length == 0:
        return 0.0
    log_precision = 0.0
    for order, matched in enumerate(matches, 1):
        total = max(hypothesis_length - order + 1, 0)
        # Add-one smoothing keeps short candidates from scoring exactly zero on 4-grams.
        log_precision += math.log((matched + 1) / (total + 1)) / MAX_ORDER
    ratio = reference_length / hypothesis_length
    brevity = 1.0 if ratio <= 1.0 else math.exp(1 - ratio)
    return brevity * math.exp(log_precision)


def char_similarity(hypothesis: _Profile, reference: _Profile) -> float:
    """Smoothed sentence-level character BLEU-4 of `hypothesis` against `reference` (0..1)."""
    return _bleu_from_matches(_matches(hypothesis, reference), hypothesis.length, reference.length)


def label_coverage(text: str, objects: Sequence[str]) -> float:
    """Share of object labels named in `text`; spacing is ignored ("패션 액세서리" = "패션액세서리")."""
    if not objects:
        return 0.0
    squashed = "".join(text.split())
    return sum(1 for label in objects if "".join(label.split()) in squashed) / len(objects)


def mentions_any(text: str, objects: Sequence[str]) -> bool:
    return label_coverage(text, objects) > 0.0


def select_candidate(
    candidates: Sequence[str], objects: Sequence[str], *, coverage_weight: float, length_weight: float = 0.0
) -> int:
    """Index of the chosen candidate: expected similarity to the other candidates, plus
    `coverage_weight` times the share of object labels it names, plus `length_weight` times its
    length relative to the candidates' mean. Ties go to the earliest candidate."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    unique: dict[str, int] = {}
    for text in candidates:
        unique[text] = unique.get(text, 0) + 1
    texts = list(unique)
    profiles = [_profile(text) for text in texts]
    agreement = [float(unique[text] - 1) for text in texts]  # identical copies agree perfectly
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            matches = _matches(profiles[i], profiles[j])
            agreement[i] += unique[texts[j]] * _bleu_from_matches(
                matches, profiles[i].length, profiles[j].length
            )
            agreement[j] += unique[texts[i]] * _bleu_from_matches(
                matches, profiles[j].length, profiles[i].length
            )
    others = len(candidates) - 1
    mean_length = sum(len(text) for text in candidates) / len(candidates) or 1.0
    best_text, best_score = candidates[0], -math.inf
    for index, text in enumerate(texts):
        if not text:
            continue
        expected = agreement[index] / others if others else 0.0
        score = expected + coverage_weight * label_coverage(text, objects)
        score += length_weight * (len(text) / mean_length - 1.0)
        if score > best_score:
            best_text, best_score = text, score
    return candidates.index(best_text)
