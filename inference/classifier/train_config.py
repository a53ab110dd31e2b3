"""The settings of an image-classifier training run, the error training reports, and the choice of the
class that moderation flags."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from inference.classifier.data import DataError
from inference.classifier.networks import BACKBONES

__all__ = ["TrainConfig", "TrainingError", "resolve_positive_class"]

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
