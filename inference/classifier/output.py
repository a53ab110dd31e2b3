"""The record a classifier training run writes beside its model (``metadata.json``), and the names of
the plots it writes there."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from inference.classifier.data import DataReport
from inference.classifier.fit import PhasedFit
from inference.classifier.metadata import FORMAT_NAME, FORMAT_VERSION, MODEL_FILE, PREPROCESSING
from inference.classifier.metrics import Evaluation
from inference.classifier.networks import BACKBONES
from inference.classifier.train_config import TrainConfig

__all__ = ["CONFUSION_PLOT", "CURVES_PLOT", "training_metadata"]

CURVES_PLOT: Final = "training_curves.png"
CONFUSION_PLOT: Final = "confusion_matrix.png"


def training_metadata(
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
    """The ``metadata.json`` document; ``training`` adds what the run did (device, split, timings)."""
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
