"""Character-level corpus BLEU, the way the seed project scored its comment models.

Each comment is split into its characters (spaces included) and scored with nltk's `corpus_bleu`
against one reference per item; BLEU-n is the cumulative score with uniform weights over 1..n-grams.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from nltk.translate.bleu_score import corpus_bleu

BLEU_WEIGHTS: dict[str, tuple[float, ...]] = {
    "bleu1": (1.0,),
    "bleu2": (0.5, 0.5),
    "bleu3": (1 / 3, 1 / 3, 1 / 3),
    "bleu4": (0.25, 0.25, 0.25, 0.25),
}


def char_corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """BLEU-1..4 over characters; returns {"bleu1": ..., "bleu4": ...}."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if not hypotheses:
        raise ValueError("BLEU needs at least one hypothesis")
    refs: list[list[list[str]]] = [[list(reference)] for reference in references]
    hyps: list[list[str]] = [list(hypothesis) for hypothesis in hypotheses]
    scores: dict[str, float] = {}
    for name, weights in BLEU_WEIGHTS.items():
        with warnings.catch_warnings():
            # nltk warns when some n-gram order has no match; the score is then 0, which is the answer.
            warnings.simplefilter("ignore", UserWarning)
            value: Any = corpus_bleu(refs, hyps, weights=weights)
        scores[name] = float(value)
    return scores
