"""A trained Lumi image classifier (``lumi train classifier`` output) as a batched runner.

Input per item: a decoded RGB frame (PIL image or uint8 array) of any size; it is resized here exactly as
training resized it (``prepare_pixels``). Output per item: the probability of every class, and of the
positive one, which is what moderation scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from inference.classifier.metadata import (
    ClassifierMetadata,
    MetadataError,
    classifier_files,
    prepare_pixels,
    read_metadata,
)
from inference.runners.base import ModelUnavailable
from inference.tensorflow_support import gpu_visible, import_keras

__all__ = ["ClassScores", "ClassifierInput", "KerasClassifierRunner"]

ClassifierInput = Image.Image | NDArray[np.uint8]


@dataclass(frozen=True)
class ClassScores:
    """Probabilities of every class for one image (they sum to 1) and that of the positive class."""

    scores: Mapping[str, float]
    positive_class: str

    @property
    def positive(self) -> float:
        return self.scores[self.positive_class]

    @property
    def top(self) -> tuple[str, float]:
        name = max(self.scores, key=lambda key: self.scores[key])
        return name, self.scores[name]


class KerasClassifierRunner:
    """``path``: the classifier folder, or its ``.keras`` file with ``metadata.json`` beside it."""

    def __init__(
        self, path: str | Path, device: str = "cpu", *, name: str | None = None, max_batch: int = 32
    ) -> None:
        self.path = Path(path)
        self._name = name or f"classifier:{self.path.name}"
        self._requested_device = device
        self._device = "cpu"
        self.max_batch = max_batch
        self._model: Any = None
        self._tf: Any = None
        self._metadata: ClassifierMetadata | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def device(self) -> str:
        return self._device

    @property
    def metadata(self) -> ClassifierMetadata:
        if self._metadata is None:
            raise RuntimeError("KerasClassifierRunner.load() must run first")
        return self._metadata

    def load(self) -> None:
        try:
            model_path, metadata_path = classifier_files(self.path)
            metadata = read_metadata(metadata_path)
        except MetadataError as error:
            raise ModelUnavailable(self.name, str(error)) from error
        try:
            keras, tf = import_keras()
        except ImportError as error:
            raise ModelUnavailable(self.name, str(error)) from error
        gpu = self._requested_device == "cuda" and gpu_visible(tf)
        try:
            with tf.device("/GPU:0" if gpu else "/CPU:0"):
                model = keras.models.load_model(str(model_path), compile=False)
        except Exception as error:
            raise ModelUnavailable(self.name, f"Keras could not load {str(model_path)!r}: {error}") from error
        expected_input = (*metadata.input_size, 3)
        if tuple(model.input_shape[1:]) != expected_input or model.output_shape[-1] != len(metadata.classes):
            raise ModelUnavailable(
                self.name,
                f"{str(model_path)!r} takes {model.input_shape[1:]} and gives {model.output_shape[-1]} "
                f"outputs, but its metadata says {expected_input} and {len(metadata.classes)} classes",
            )
        self._device = "cuda" if gpu else "cpu"
        self._tf = tf
        self._metadata = metadata
        self._model = model
        # Keras traces its prediction graph per batch shape until a second shape shows it the batch size
        # varies; two sizes here make the graph shape-generic before the first real image arrives.
        for size in (1, 2):
            self._infer(np.zeros((size, *expected_input), dtype=np.float32))

    def warmup_inputs(self) -> list[object]:
        height, width = self.metadata.input_size
        return [Image.new("RGB", (width, height), (128, 128, 128))]

    def predict_batch(self, items: Sequence[ClassifierInput]) -> list[ClassScores]:
        if self._model is None:
            raise RuntimeError("KerasClassifierRunner.load() must run before predict_batch()")
        if not items:
            return []
        metadata = self.metadata
        batch = np.stack([prepare_pixels(item, metadata.input_size) for item in items]).astype(np.float32)
        probabilities = self.predict_array(batch)
        return [
            ClassScores(
                scores={name: float(value) for name, value in zip(metadata.classes, row, strict=True)},
                positive_class=metadata.positive_class,
            )
            for row in probabilities
        ]

    def predict_array(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Probabilities for an already prepared (n, height, width, 3) batch of 0-255 pixels, run
        ``max_batch`` images at a time."""
        if self._model is None:
            raise RuntimeError("KerasClassifierRunner.load() must run before predict_array()")
        return np.concatenate(
            [
                self._infer(batch[start : start + self.max_batch])
                for start in range(0, len(batch), self.max_batch)
            ]
        )

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        with self._tf.device("/GPU:0" if self._device == "cuda" else "/CPU:0"):
            # `predict_on_batch`, not `predict` (which builds a dataset pipeline per call) nor a direct call
            # (eager, layer by layer: ten times slower than the compiled graph for MobileNetV3).
            output = self._model.predict_on_batch(batch)
        return np.asarray(output, dtype=np.float32)

    def close(self) -> None:
        self._model = None
