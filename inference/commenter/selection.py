"""Choosing one comment among sampled candidates.

Minimum-Bayes-risk selection picks the candidate that agrees most with the others (character n-gram
overlap, the quantity BLEU rewards): a single sample can wander, the consensus rarely does. A bonus
for naming the photo's objects counters the model's habit of dropping labels from long lists, and a
small bonus for length counters the pull of n-gram overlap towards short, generic candidates (which
BLEU's brevity penalty, and readers, punish).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

MAX_ORDER = 4
_PARENTHETICAL = re.compile(r"\s*\([^)]*\)")


def _ngram_counts(texts: Sequence[str], order: int) -> np.ndarray:
    """Counts of every character n-gram of length `order` (columns) in each text (rows)."""
    columns: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for row, text in enumerate(texts):
        for start in range(len(text) - order + 1):
            rows.append(row)
            cols.append(columns.setdefault(text[start : start + order], len(columns)))
    width = max(len(columns), 1)
    flat = np.array(rows, dtype=np.intp) * width + np.array(cols, dtype=np.intp)
    return np.bincount(flat, minlength=len(texts) * width).reshape(len(texts), width)


def similarity_matrix(texts: Sequence[str]) -> np.ndarray:
    """`[i, j]`: smoothed sentence-level character BLEU-4 of `texts[i]` against `texts[j]` (0..1)."""
    lengths = np.array([len(text) for text in texts], dtype=np.float64)
    log_precision = np.zeros((len(texts), len(texts)))
    for order in range(1, MAX_ORDER + 1):
        counts = _ngram_counts(texts, order)
        # Clipped matches: for each n-gram, the smaller of the two counts.
        matches = np.minimum(counts[:, None, :], counts[None, :, :]).sum(axis=2)
        totals = np.maximum(lengths - order + 1, 0.0)[:, None]
        # Add-one smoothing keeps short candidates from scoring exactly zero on 4-grams.
        log_precision += np.log((matches + 1.0) / (totals + 1.0)) / MAX_ORDER
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = lengths[None, :] / lengths[:, None]
    brevity = np.where(ratio <= 1.0, 1.0, np.exp(1.0 - ratio))
    scores = brevity * np.exp(log_precision)
    empty = lengths == 0
    scores[empty, :] = 0.0
    scores[:, empty] = 0.0
    return scores


def char_similarity(hypothesis: str, reference: str) -> float:
    """Smoothed sentence-level character BLEU-4 of `hypothesis` against `reference` (0..1)."""
    return float(similarity_matrix([hypothesis, reference])[0, 1])


def label_coverage(text: str, objects: Sequence[str]) -> float:
    """Share of object labels named in `text`; spacing is ignored ("패션 액세서리" = "패션액세서리") and
    so is a parenthetical qualifier ("박쥐 (동물)" is named by "박쥐")."""
    if not objects:
        return 0.0
    squashed = "".join(text.split())
    return sum(1 for label in objects if "".join(_bare(label).split()) in squashed) / len(objects)


def _bare(label: str) -> str:
    return _PARENTHETICAL.sub("", label).strip() or label


def mentions_any(text: str, objects: Sequence[str]) -> bool:
    return label_coverage(text, objects) > 0.0


def candidate_scores(
    candidates: Sequence[str], objects: Sequence[str], *, coverage_weight: float, length_weight: float = 0.0
) -> list[float]:
    """Per candidate: expected similarity to the other candidates, plus `coverage_weight` times the
    share of object labels it names, plus `length_weight` times its length relative to the
    candidates' mean. Empty candidates score -inf."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    texts = list(dict.fromkeys(candidates))
    copies = np.array([candidates.count(text) for text in texts], dtype=np.float64)
    similarity = similarity_matrix(texts)
    np.fill_diagonal(similarity, 0.0)
    # Identical copies agree perfectly: a candidate sampled twice is strong consensus.
    agreement = similarity @ copies + (copies - 1.0)
    others = len(candidates) - 1
    mean_length = sum(len(text) for text in candidates) / len(candidates) or 1.0
    by_text: dict[str, float] = {}
    for index, text in enumerate(texts):
        if not text:
            by_text[text] = -np.inf
            continue
        expected = agreement[index] / others if others else 0.0
        score = expected + coverage_weight * label_coverage(text, objects)
        by_text[text] = float(score + length_weight * (len(text) / mean_length - 1.0))
    return [by_text[text] for text in candidates]


def select_candidate(
    candidates: Sequence[str], objects: Sequence[str], *, coverage_weight: float, length_weight: float = 0.0
) -> int:
    """Index of the candidate with the best `candidate_scores`; ties go to the earliest candidate."""
    scores = candidate_scores(
        candidates, objects, coverage_weight=coverage_weight, length_weight=length_weight
    )
    best = max(range(len(candidates)), key=lambda index: (scores[index], -index))
    return 0 if scores[best] == -np.inf else best
