"""Scoring a trained image classifier on labelled images (``lumi train evaluate``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from inference.classifier.data import (
    DataError,
    DataReport,
    find_examples,
    load_pixels,
    validate_examples,
)
from inference.classifier.metadata import ClassifierMetadata, MetadataError
from inference.classifier.metrics import Evaluation, evaluate_probabilities
from inference.classifier.runner import KerasClassifierRunner
from inference.classifier.train_config import TrainingError
from inference.runners.base import ModelUnavailable

__all__ = ["EvaluationRun", "evaluate_classifier"]


@dataclass(frozen=True)
class EvaluationRun:
    evaluation: Evaluation
    report: DataReport
    metadata: ClassifierMetadata
    threshold: float


def evaluate_classifier(
    model: Path,
    data: Path,
    *,
    threshold: float | None = None,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    batch_size: int = 32,
    workers: int = 4,
) -> EvaluationRun:
    """Score a trained classifier on labelled images, through the same runner the bot serves it with."""
    runner = KerasClassifierRunner(model, "cpu" if device == "cpu" else "cuda", name="evaluate")
    try:
        runner.load()
    except ModelUnavailable as error:
        raise TrainingError(error.reason) from error
    except MetadataError as error:
        raise TrainingError(str(error)) from error
    try:
        metadata = runner.metadata
        # Held-out images of one class alone (say, new reports of violence) are a fair test set too.
        examples, report = validate_examples(
            find_examples(data), min_per_class=1, min_classes=1, workers=workers
        )
        unknown = sorted(set(report.classes) - set(metadata.classes))
        if unknown:
            raise DataError(
                f"the data has classes the model does not know: {', '.join(unknown)} "
                f"(the model's classes: {', '.join(metadata.classes)})"
            )
        class_index = {name: index for index, name in enumerate(metadata.classes)}
        chosen = metadata.recommended_threshold if threshold is None else threshold
        probabilities = []
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            pixels = np.stack([load_pixels(example.path, metadata.input_size) for example in chunk])
            probabilities.append(runner.predict_array(pixels.astype(np.float32)))
        evaluation = evaluate_probabilities(
            np.concatenate(probabilities),
            [class_index[example.label] for example in examples],
            metadata.classes,
            positive_class=metadata.positive_class,
            threshold=chosen,
        )
    finally:
        runner.close()
    return EvaluationRun(evaluation=evaluation, report=report, metadata=metadata, threshold=chosen)
