"""Training and evaluating image classifiers for moderation (``lumi train classifier`` / ``evaluate``).

A run: find and check the images, split them (stratified), train with early stopping while keeping the
best checkpoint by validation loss, then score the best model on the validation split, pick the
threshold for the positive class there, and write the output folder:

- ``model.keras``: the best model (float32 layers, whatever precision training used);
- ``metadata.json``: classes, positive class, input size, preprocessing, recommended threshold, metrics,
  the data report and the training settings;
- ``training_curves.png`` and ``confusion_matrix.png``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, TextIO

import numpy as np
from numpy.typing import NDArray

from inference.classifier_metadata import (
    FORMAT_NAME,
    FORMAT_VERSION,
    METADATA_FILE,
    MODEL_FILE,
    PREPROCESSING,
    ClassifierMetadata,
    MetadataError,
)
from inference.runners.base import ModelUnavailable
from inference.runners.keras_classifier import KerasClassifierRunner
from inference.tensorflow_support import gpu_visible, hide_gpus, import_keras
from inference.train.classifier_data import (
    DataError,
    DataReport,
    Example,
    augmentation,
    balanced_class_weights,
    find_examples,
    load_pixels,
    make_dataset,
    stratified_split,
    validate_examples,
)
from inference.train.classifier_fit import PhasedFit
from inference.train.classifier_metrics import Evaluation, choose_threshold, evaluate_probabilities
from inference.train.classifier_models import (
    BACKBONES,
    WeightsUnavailable,
    build_classifier,
    dtype_policy,
    float32_copy,
    freeze_backbone,
    unfreeze_top,
)
from inference.train.classifier_plots import plot_confusion_matrix, plot_history

__all__ = [
    "CONFUSION_PLOT",
    "CURVES_PLOT",
    "EvaluationRun",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "evaluate_classifier",
    "resolve_positive_class",
    "train_classifier",
]

CURVES_PLOT: Final = "training_curves.png"
CONFUSION_PLOT: Final = "confusion_matrix.png"
_CHECKPOINT: Final = "best_checkpoint.keras"
# Two-class folders named like this are the harmless side; the other class is what moderation flags.
_NEGATIVE_NAMES: Final = frozenset(
    {"safe", "ok", "clean", "normal", "negative", "none", "other", "neutral", "benign", "sfw", "allowed"}
)


class TrainingError(RuntimeError):
    """Training cannot start or finish; the message says why and what to do."""


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    out_dir: Path
    backbone: str = "small"
    weights: Literal["imagenet", "none"] = "none"
    # Square side in pixels; None takes the backbone's default (224, or 128 for the small CNN).
    image_size: int | None = None
    # Phase 1 (the head on a frozen backbone, or the whole network when it starts from scratch).
    epochs: int = 10
    # Phase 2, fine-tuning the top of a pretrained backbone; None: as many as phase 1 (0 from scratch).
    fine_tune_epochs: int | None = None
    fine_tune_layers: int = 20
    batch_size: int = 32
    learning_rate: float | None = None
    validation_fraction: float = 0.2
    min_per_class: int = 10
    positive_class: str | None = None
    patience: int = 4
    augment: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # None: on when training runs on a GPU, off on the CPU (where float16 is slower, not faster).
    mixed_precision: bool | None = None
    seed: int = 1337
    workers: int = 4

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise TrainingError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        if self.epochs < 1 or (self.fine_tune_epochs or 0) < 0:
            raise TrainingError("epochs must be at least 1 (fine-tune epochs at least 0)")
        if self.image_size is not None and not 32 <= self.image_size <= 1024:
            raise TrainingError("the image size must be between 32 and 1024 pixels")
        if self.batch_size < 1:
            raise TrainingError("the batch size must be at least 1")


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    model_path: Path
    metadata_path: Path
    plots: list[Path]
    metadata: dict[str, Any]
    evaluation: Evaluation
    report: DataReport
    validation: list[Example]
    # Softmax outputs of the saved model on ``validation``, in that order.
    validation_probabilities: NDArray[np.float32] = field(repr=False)
    seconds: float = 0.0


@dataclass(frozen=True)
class EvaluationRun:
    evaluation: Evaluation
    report: DataReport
    metadata: ClassifierMetadata
    threshold: float


def resolve_positive_class(classes: Sequence[str], requested: str | None) -> str:
    """The class moderation flags: as requested, or the non-"safe" one of two classes."""
    if requested is not None:
        if requested not in classes:
            raise DataError(f"--positive {requested!r} is not one of the classes: {', '.join(classes)}")
        return requested
    if len(classes) == 2:
        negatives = [name for name in classes if name.lower() in _NEGATIVE_NAMES]
        if len(negatives) == 1:
            return next(name for name in classes if name not in negatives)
    raise DataError(f"say which class moderation should flag with --positive (one of: {', '.join(classes)})")


def train_classifier(config: TrainConfig, *, out: TextIO | None = None) -> TrainResult:
    stream = out if out is not None else sys.stdout
    started = time.perf_counter()
    examples, report = validate_examples(
        find_examples(config.data), min_per_class=config.min_per_class, workers=config.workers
    )
    _say(stream, *report.lines())
    classes = report.classes
    positive = resolve_positive_class(classes, config.positive_class)
    train, validation = stratified_split(
        examples, validation_fraction=config.validation_fraction, seed=config.seed
    )
    _say(
        stream,
        f"split: {len(train)} for training, {len(validation)} for validation; positive class: {positive}",
    )

    keras, tf = import_keras()
    if config.device == "cpu" and not hide_gpus(tf):
        _say(stream, "warning: TensorFlow had already set up its GPUs in this process; --device cpu ignored")
    gpu = config.device != "cpu" and gpu_visible(tf)
    if config.device == "cuda" and not gpu:
        _say(stream, "warning: no GPU is visible to TensorFlow; training on the CPU")
    mixed = gpu if config.mixed_precision is None else config.mixed_precision and gpu
    if config.mixed_precision and not gpu:
        _say(stream, "mixed precision is for GPUs; training in float32 on the CPU")
    keras.utils.set_random_seed(config.seed)

    spec = BACKBONES[config.backbone]
    side = config.image_size or spec.default_size
    input_size = (side, side)
    class_index = {name: index for index, name in enumerate(classes)}
    augment = augmentation(keras, seed=config.seed) if config.augment else None
    train_data = make_dataset(
        tf,
        train,
        class_index,
        input_size=input_size,
        batch_size=config.batch_size,
        training=True,
        augment=augment,
        seed=config.seed,
    )
    validation_data = make_dataset(
        tf, validation, class_index, input_size=input_size, batch_size=config.batch_size, training=False
    )
    weights = balanced_class_weights((class_index[example.label] for example in train), len(classes))

    try:
        with dtype_policy(keras, mixed=mixed):
            built = build_classifier(
                keras, config.backbone, n_classes=len(classes), input_size=input_size, weights=config.weights
            )
    except WeightsUnavailable as error:
        raise TrainingError(str(error)) from error
    except ValueError as error:
        raise TrainingError(str(error)) from error

    config.out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = config.out_dir / _CHECKPOINT
    steps = math.ceil(len(train) / config.batch_size)
    fit = PhasedFit(
        keras, built, train_data, validation_data, weights, checkpoint, steps, config.patience, stream
    )

    first_rate = config.learning_rate or built.first_learning_rate
    if built.pretrained:
        freeze_backbone(built)
        phase_one = "head on the frozen backbone"
    else:
        phase_one = "whole network"
    fit.phase(phase_one, epochs=config.epochs, learning_rate=first_rate)
    fine_tune_from: int | None = None
    fine_tune_epochs = config.fine_tune_epochs
    if fine_tune_epochs is None:
        fine_tune_epochs = config.epochs if built.pretrained else 0
    if built.pretrained and fine_tune_epochs > 0:
        unfrozen = unfreeze_top(keras, built, layers=config.fine_tune_layers)
        fine_tune_from = len(fit.history["loss"]) + 1
        fit.phase(
            f"fine-tuning the top {unfrozen} backbone layers",
            epochs=fine_tune_epochs,
            learning_rate=spec.fine_tune_learning_rate,
        )

    # No checkpoint means no epoch had a finite validation loss: keep the last weights rather than none.
    best = keras.models.load_model(str(checkpoint), compile=False) if checkpoint.exists() else built.model
    final = float32_copy(keras, best) if mixed else best
    model_path = config.out_dir / MODEL_FILE
    final.save(str(model_path))
    checkpoint.unlink(missing_ok=True)

    probabilities = _predict(final, validation_data)
    truth = np.array([class_index[example.label] for example in validation])
    positive_index = class_index[positive]
    threshold = choose_threshold(truth == positive_index, probabilities[:, positive_index].astype(np.float64))
    evaluation = evaluate_probabilities(
        probabilities, truth, classes, positive_class=positive, threshold=threshold
    )
    seconds = time.perf_counter() - started
    metadata = _metadata(
        config,
        report,
        classes=classes,
        positive=positive,
        input_size=input_size,
        threshold=threshold,
        evaluation=evaluation,
        fit=fit,
        training={
            "device": "cuda" if gpu else "cpu",
            "mixed_precision": mixed,
            "split": {"train": len(train), "validation": len(validation)},
            "class_weights": {classes[index]: round(value, 4) for index, value in weights.items()},
            "fine_tune_from_epoch": fine_tune_from,
            "learning_rates": {
                "first_phase": first_rate,
                "fine_tuning": spec.fine_tune_learning_rate if fine_tune_from else None,
            },
            "seconds": round(seconds, 1),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    )
    metadata_path = config.out_dir / METADATA_FILE
    metadata_path.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plots = [config.out_dir / CURVES_PLOT, config.out_dir / CONFUSION_PLOT]
    plot_history(fit.history, plots[0], fine_tune_from=fine_tune_from)
    plot_confusion_matrix(evaluation.confusion, classes, plots[1])

    _say(
        stream,
        "",
        f"saved {model_path}",
        f"  backbone {config.backbone} (weights {config.weights}), input {side}x{side}, "
        f"{'mixed precision' if mixed else 'float32'} on {'GPU' if gpu else 'CPU'}",
        f"  epochs run: {len(fit.history['loss'])}, best: {fit.best_epoch} "
        f"(validation loss {fit.best_loss:.4f}), {seconds:.1f} s",
        f"  recommended threshold for {positive}: {threshold:.3f} (best F1 on the validation split)",
        f"  files: {', '.join(path.name for path in [model_path, metadata_path, *plots])}",
        "",
        "validation split:",
        *evaluation.lines(),
    )
    return TrainResult(
        out_dir=config.out_dir,
        model_path=model_path,
        metadata_path=metadata_path,
        plots=plots,
        metadata=metadata,
        evaluation=evaluation,
        report=report,
        validation=validation,
        validation_probabilities=probabilities,
        seconds=seconds,
    )


def _predict(model: Any, dataset: Any) -> NDArray[np.float32]:
    outputs = [np.asarray(model(images, training=False), dtype=np.float32) for images, _labels in dataset]
    return np.concatenate(outputs) if outputs else np.zeros((0, model.output_shape[-1]), dtype=np.float32)


def _metadata(
    config: TrainConfig,
    report: DataReport,
    *,
    classes: Sequence[str],
    positive: str,
    input_size: tuple[int, int],
    threshold: float,
    evaluation: Evaluation,
    fit: PhasedFit,
    training: dict[str, Any],
) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_file": MODEL_FILE,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "classes": list(classes),
        "positive_class": positive,
        "input_size": list(input_size),
        "preprocessing": {**PREPROCESSING, "in_model": BACKBONES[config.backbone].preprocessing},
        "backbone": config.backbone,
        "weights": config.weights,
        "recommended_threshold": threshold,
        "threshold_rule": f"best F1 for {positive} against the other classes on the validation split",
        "metrics": {
            "split": "validation",
            **evaluation.to_dict(),
            "best_epoch": fit.best_epoch,
            "best_val_loss": round(fit.best_loss, 5),
        },
        "history": {key: [round(value, 5) for value in values] for key, values in fit.history.items()},
        "data": {"source": str(config.data), **report.to_dict()},
        "training": {
            "epochs": config.epochs,
            "fine_tune_epochs": config.fine_tune_epochs,
            "fine_tune_layers": config.fine_tune_layers,
            "batch_size": config.batch_size,
            "learning_rate": config.learning_rate,
            "validation_fraction": config.validation_fraction,
            "augment": config.augment,
            "patience": config.patience,
            "seed": config.seed,
            **training,
        },
    }


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


def _say(stream: TextIO, *lines: str) -> None:
    for line in lines:
        stream.write(line + "\n")
    stream.flush()
