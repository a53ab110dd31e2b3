"""Classifier metrics: confusion matrix, precision/recall/F1 per class and at a threshold, threshold choice.

Pure numpy, so evaluation works (and is tested) without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BinaryScores",
    "ClassReport",
    "Evaluation",
    "choose_threshold",
    "confusion_matrix",
    "evaluate_probabilities",
]


@dataclass(frozen=True)
class ClassReport:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class BinaryScores:
    """Positive class against all others, a post counting as positive from ``threshold`` up."""

    threshold: float
    precision: float
    recall: float
    f1: float
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int


@dataclass(frozen=True)
class Evaluation:
    classes: tuple[str, ...]
    accuracy: float
    per_class: tuple[ClassReport, ...]
    confusion: list[list[int]]
    positive_class: str
    at_threshold: BinaryScores

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": round(self.accuracy, 4),
            "per_class": {
                item.name: {
                    "precision": round(item.precision, 4),
                    "recall": round(item.recall, 4),
                    "f1": round(item.f1, 4),
                    "support": item.support,
                }
                for item in self.per_class
            },
            "confusion_matrix": self.confusion,
            "positive_class": self.positive_class,
            "at_threshold": {
                key: round(value, 4) if isinstance(value, float) else value
                for key, value in asdict(self.at_threshold).items()
            },
        }

    def lines(self) -> list[str]:
        """The report `lumi train evaluate` and the training summary print."""
        width = max(len(name) for name in self.classes)
        lines = [f"accuracy (most probable class): {self.accuracy:.3f}", ""]
        lines.append(f"{'class':<{width}}  precision  recall     f1  support")
        for item in self.per_class:
            lines.append(
                f"{item.name:<{width}}  {item.precision:9.3f}  {item.recall:6.3f}  "
                f"{item.f1:5.3f}  {item.support:7d}"
            )
        binary = self.at_threshold
        lines += [
            "",
            f"{self.positive_class} at threshold {binary.threshold:.3f}: precision {binary.precision:.3f}, "
            f"recall {binary.recall:.3f}, F1 {binary.f1:.3f} "
            f"(TP {binary.true_positives}, FP {binary.false_positives}, "
            f"FN {binary.false_negatives}, TN {binary.true_negatives})",
            "",
            "confusion matrix (rows: true class, columns: predicted):",
        ]
        lines.append(" " * (width + 2) + "  ".join(f"{name[:8]:>8}" for name in self.classes))
        for name, row in zip(self.classes, self.confusion, strict=True):
            lines.append(f"{name:<{width}}  " + "  ".join(f"{value:>8d}" for value in row))
        return lines


def confusion_matrix(
    truth: NDArray[np.int_], predicted: NDArray[np.int_], n_classes: int
) -> NDArray[np.int_]:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


def _binary(truth: NDArray[np.bool_], scores: NDArray[np.float64], threshold: float) -> BinaryScores:
    flagged = scores >= threshold
    tp = int(np.sum(flagged & truth))
    fp = int(np.sum(flagged & ~truth))
    fn = int(np.sum(~flagged & truth))
    tn = int(np.sum(~flagged & ~truth))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return BinaryScores(threshold, precision, recall, _f1(precision, recall), tp, fp, fn, tn)


def choose_threshold(truth: NDArray[np.bool_], scores: NDArray[np.float64]) -> float:
    """The positive-class threshold with the best F1 on these (validation) scores.

    Candidates lie half-way between neighbouring scores, so the chosen value keeps a margin on both
    sides; among equally good candidates the middle one is taken for the same reason. With no positive
    example there is nothing to tune and 0.5 is returned.
    """
    if not truth.any():
        return 0.5
    values = np.unique(np.clip(scores, 0.0, 1.0))
    candidates = (
        np.concatenate(([0.5], (values[:-1] + values[1:]) / 2.0)) if len(values) > 1 else np.array([0.5])
    )
    results = [(_binary(truth, scores, float(candidate)).f1, float(candidate)) for candidate in candidates]
    best = max(f1 for f1, _ in results)
    tied = sorted(candidate for f1, candidate in results if f1 >= best - 1e-12)
    return round(tied[len(tied) // 2], 4)


def evaluate_probabilities(
    probabilities: NDArray[np.float64] | NDArray[np.float32],
    truth: Sequence[int] | NDArray[np.int_],
    classes: Sequence[str],
    *,
    positive_class: str,
    threshold: float,
) -> Evaluation:
    """Scores of softmax outputs (n, classes) against true class indices."""
    probs = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(truth, dtype=np.int64)
    n_classes = len(classes)
    predicted = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    matrix = confusion_matrix(labels, predicted, n_classes)
    per_class = []
    for index, name in enumerate(classes):
        tp = matrix[index, index]
        precision = _ratio(tp, matrix[:, index].sum())
        recall = _ratio(tp, matrix[index, :].sum())
        per_class.append(
            ClassReport(name, precision, recall, _f1(precision, recall), int(matrix[index].sum()))
        )
    positive = list(classes).index(positive_class)
    positive_scores = probs[:, positive] if len(probs) else np.zeros(0)
    return Evaluation(
        classes=tuple(classes),
        accuracy=_ratio(np.trace(matrix), matrix.sum()),
        per_class=tuple(per_class),
        confusion=matrix.tolist(),
        positive_class=positive_class,
        at_threshold=_binary(labels == positive, positive_scores, threshold),
    )
