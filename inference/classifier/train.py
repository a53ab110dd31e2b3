"""Training image classifiers for moderation (``lumi train classifier``).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import numpy as np
from numpy.typing import NDArray

from inference.classifier.data import (
    DataReport,
    Example,
    augmentation,
    balanced_class_weights,
    find_examples,
    make_dataset,
    stratified_split,
    validate_examples,
)
from inference.classifier.fit import PhasedFit
from inference.classifier.metadata import METADATA_FILE, MODEL_FILE
from inference.classifier.metrics import Evaluation, choose_threshold, evaluate_probabilities
from inference.classifier.networks import (
    BACKBONES,
    WeightsUnavailable,
    build_classifier,
    dtype_policy,
    float32_copy,
    freeze_backbone,
    unfreeze_top,
)
from inference.classifier.output import CONFUSION_PLOT, CURVES_PLOT, training_metadata
from inference.classifier.plots import plot_confusion_matrix, plot_history
from inference.classifier.train_config import TrainConfig, TrainingError, resolve_positive_class
from inference.tensorflow_support import gpu_visible, hide_gpus, import_keras

__all__ = ["TrainResult", "train_classifier"]

_CHECKPOINT: Final = "best_checkpoint.keras"


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
    metadata = training_metadata(
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


def _say(stream: TextIO, *lines: str) -> None:
    for line in lines:
        stream.write(line + "\n")
    stream.flush()
