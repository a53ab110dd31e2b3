"""Lumi's custom image classifiers: training (Keras transfer learning from a folder of labelled images),
the metadata file a trained classifier carries, and the runner that serves it.
"""

from __future__ import annotations

from inference.classifier.data import DataError
from inference.classifier.evaluate import evaluate_classifier
from inference.classifier.metadata import (
    METADATA_FILE,
    ClassifierMetadata,
    MetadataError,
    classifier_files,
    prepare_pixels,
    read_metadata,
)
from inference.classifier.runner import ClassifierInput, ClassScores, KerasClassifierRunner
from inference.classifier.train import train_classifier
from inference.classifier.train_config import TrainConfig, TrainingError

__all__ = [
    "METADATA_FILE",
    "ClassScores",
    "ClassifierInput",
    "ClassifierMetadata",
    "DataError",
    "KerasClassifierRunner",
    "MetadataError",
    "TrainConfig",
    "TrainingError",
    "classifier_files",
    "evaluate_classifier",
    "prepare_pixels",
    "read_metadata",
    "train_classifier",
]
