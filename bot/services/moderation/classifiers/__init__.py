"""Custom classifiers: categories a server adds to moderation, each served by a trained Keras classifier
(the catalog of registered classifiers, their checks, the detector that runs them beside NudeNet and
open_nsfw, and the registry as the inference service reads it).
"""

from __future__ import annotations

from bot.services.moderation.classifiers.blob_registry import classifier_file_sweep
from bot.services.moderation.classifiers.detector import (
    ClassifierCatalog,
    ClassifierDetector,
    RegisteredClassifier,
    classifier_catalog,
    classifier_catalog_for,
    verify_classifier,
)
from bot.services.moderation.classifiers.served import ServedClassifierSource

__all__ = [
    "ClassifierCatalog",
    "ClassifierDetector",
    "RegisteredClassifier",
    "ServedClassifierSource",
    "classifier_catalog",
    "classifier_catalog_for",
    "classifier_file_sweep",
    "verify_classifier",
]
