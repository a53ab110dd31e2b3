"""Each served model split in two: what a gateway does (items into tensors, tensors into results) and
what the inference service does (tensors into the runner's prepared input, results into tensors).

Images are decoded and resized once, in the gateway, by the runner's own preparation step (NudeNet's
letterbox, open_nsfw's crop), and travel as uint8 tensors: a 320 px letterbox is 300 KB where its float
tensor would be 1.2 MB. Models that read images of any size (faces, objects) get them as a padded batch
with each image's size. Results come back as small tensors, one row per detection with a count per
item, and are turned back into the same dataclasses the in-process runners return, so the results of
a remote model equal those of the local one.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from inference.runners.emotions import CROP_SIZE, FER_EMOTIONS, EmotionScores
from inference.runners.faces import FaceBox
from inference.runners.nudenet import NUDENET_LABELS, Detection, NudeNetRunner
from inference.runners.objects import ObjectDetection
from inference.runners.open_nsfw import OpenNsfwRunner
from inference.serving.oip import OipError
from inference.serving.tensors import (
    Tensors,
    bytes_tensor,
    pad_images,
    require,
    require_count,
    rows_per_item,
    unpad_images,
)

__all__ = [
    "CODECS",
    "Codec",
    "CommenterCodec",
    "EmotionsCodec",
    "FacesCodec",
    "NudeNetCodec",
    "ObjectsCodec",
    "OpenNsfwCodec",
]

T = TypeVar("T")
P = TypeVar("P")
R = TypeVar("R")
ImageInput = Image.Image | NDArray[np.uint8]


class Codec(ABC, Generic[T, P, R]):
    """``T``: what a gateway's caller submits; ``P``: one item as the service's runner takes it;
    ``R``: one result."""

    # The model's name on the wire: a class attribute, or one per instance (a custom classifier's).
    name: str

    # Gateway side.
    @abstractmethod
    def encode_items(self, items: Sequence[T]) -> Tensors: ...

    @abstractmethod
    def decode_results(self, outputs: Tensors, count: int) -> list[R]: ...

    # Service side.
    @abstractmethod
    def split_items(self, inputs: Tensors) -> list[P]:
        """The request's items, checked; raises ``OipError`` for anything the model cannot take."""

    @abstractmethod
    def run(self, runner: Any, items: Sequence[P]) -> list[R]: ...

    @abstractmethod
    def encode_results(self, results: Sequence[R]) -> Tensors: ...


class NudeNetCodec(Codec[ImageInput, tuple[NDArray[np.uint8], tuple[int, int]], list[Detection]]):
    name = "nudenet"

    def __init__(self) -> None:
        self._prepare = NudeNetRunner()

    def encode_items(self, items: Sequence[ImageInput]) -> Tensors:
        letterboxed = [self._prepare.letterbox(item) for item in items]
        return {
            "PIXELS": np.stack([canvas for canvas, _ in letterboxed]),
            "SIZES": np.array([size for _, size in letterboxed], dtype=np.int64).reshape(-1, 2),
        }

    def split_items(self, inputs: Tensors) -> list[tuple[NDArray[np.uint8], tuple[int, int]]]:
        pixels = require(inputs, "PIXELS", np.uint8, 4)
        sizes = require(inputs, "SIZES", np.int64, 2)
        require_count("SIZES", sizes, len(pixels))
        if pixels.shape[1] != pixels.shape[2] or pixels.shape[3] != 3 or sizes.shape[1] != 2:
            raise OipError("NudeNet takes square RGB letterboxes and one (width, height) row per image")
        if len(sizes) and (sizes <= 0).any():
            raise OipError("tensor 'SIZES' holds a width or height under 1")
        return [(pixels[i], (int(sizes[i, 0]), int(sizes[i, 1]))) for i in range(len(pixels))]

    def run(
        self, runner: Any, items: Sequence[tuple[NDArray[np.uint8], tuple[int, int]]]
    ) -> list[list[Detection]]:
        if items and items[0][0].shape[0] != runner.input_size:
            raise OipError(f"NudeNet letterboxes must be {runner.input_size} px, got {items[0][0].shape[0]}")
        canvases = np.stack([canvas for canvas, _ in items])
        sizes = np.array([size for _, size in items], dtype=np.int64)
        results: list[list[Detection]] = runner.predict_letterboxed(canvases, sizes)
        return results

    def encode_results(self, results: Sequence[list[Detection]]) -> Tensors:
        found = [detection for detections in results for detection in detections]
        return {
            "COUNTS": np.array([len(detections) for detections in results], dtype=np.int64),
            "CLASSES": np.array([NUDENET_LABELS.index(d.label) for d in found], dtype=np.int64),
            "SCORES": np.array([d.score for d in found], dtype=np.float32),
            "BOXES": np.array([d.box for d in found], dtype=np.int64).reshape(-1, 4),
        }

    def decode_results(self, outputs: Tensors, count: int) -> list[list[Detection]]:
        slices = rows_per_item(outputs, count, "CLASSES", "SCORES", "BOXES")
        classes = require(outputs, "CLASSES", np.int64, 1)
        scores = require(outputs, "SCORES", np.float32, 1)
        boxes = require(outputs, "BOXES", np.int64, 2)
        if len(classes) and (classes.min() < 0 or classes.max() >= len(NUDENET_LABELS)):
            raise OipError("tensor 'CLASSES' names a class NudeNet does not have")
        return [
            [
                Detection(NUDENET_LABELS[int(classes[i])], float(scores[i]), _box(boxes[i]))
                for i in range(rows.start, rows.stop)
            ]
            for rows in slices
        ]


class OpenNsfwCodec(Codec[ImageInput, NDArray[np.uint8], float]):
    name = "open_nsfw"

    def __init__(self) -> None:
        self._prepare = OpenNsfwRunner()

    def encode_items(self, items: Sequence[ImageInput]) -> Tensors:
        return {"CROPS": np.stack([self._prepare.crop(item) for item in items])}

    def split_items(self, inputs: Tensors) -> list[NDArray[np.uint8]]:
        crops = require(inputs, "CROPS", np.uint8, 4)
        if crops.shape[1:] != (224, 224, 3):
            raise OipError(f"open_nsfw takes 224x224 RGB crops, got {list(crops.shape[1:])}")
        return list(crops)

    def run(self, runner: Any, items: Sequence[NDArray[np.uint8]]) -> list[float]:
        scores: list[float] = runner.predict_crops(np.stack(items))
        return scores

    def encode_results(self, results: Sequence[float]) -> Tensors:
        return {"PROBABILITY": np.array(results, dtype=np.float32)}

    def decode_results(self, outputs: Tensors, count: int) -> list[float]:
        probability = require(outputs, "PROBABILITY", np.float32, 1)
        require_count("PROBABILITY", probability, count)
        return [float(value) for value in probability]


class FacesCodec(Codec[ImageInput, NDArray[np.uint8], list[FaceBox]]):
    name = "faces"

    def encode_items(self, items: Sequence[ImageInput]) -> Tensors:
        return pad_images(items)

    def split_items(self, inputs: Tensors) -> list[NDArray[np.uint8]]:
        return unpad_images(inputs)

    def run(self, runner: Any, items: Sequence[NDArray[np.uint8]]) -> list[list[FaceBox]]:
        faces: list[list[FaceBox]] = runner.predict_batch(items)
        return faces

    def encode_results(self, results: Sequence[list[FaceBox]]) -> Tensors:
        found = [face for faces in results for face in faces]
        return {
            "COUNTS": np.array([len(faces) for faces in results], dtype=np.int64),
            "BOXES": np.array([(f.x, f.y, f.width, f.height) for f in found], dtype=np.int64).reshape(-1, 4),
            "SCORES": np.array([f.score for f in found], dtype=np.float64),
        }

    def decode_results(self, outputs: Tensors, count: int) -> list[list[FaceBox]]:
        slices = rows_per_item(outputs, count, "BOXES", "SCORES")
        boxes = require(outputs, "BOXES", np.int64, 2)
        scores = require(outputs, "SCORES", np.float64, 1)
        return [
            [FaceBox(*_box(boxes[i]), float(scores[i])) for i in range(rows.start, rows.stop)]
            for rows in slices
        ]


class ObjectsCodec(Codec[ImageInput, NDArray[np.uint8], list[ObjectDetection]]):
    name = "objects"

    def encode_items(self, items: Sequence[ImageInput]) -> Tensors:
        return pad_images(items)

    def split_items(self, inputs: Tensors) -> list[NDArray[np.uint8]]:
        return unpad_images(inputs)

    def run(self, runner: Any, items: Sequence[NDArray[np.uint8]]) -> list[list[ObjectDetection]]:
        # The runner reads PIL images as RGB (numpy arrays would be taken as OpenCV's BGR).
        found: list[list[ObjectDetection]] = runner.predict_batch([Image.fromarray(item) for item in items])
        return found

    def encode_results(self, results: Sequence[list[ObjectDetection]]) -> Tensors:
        found = [detection for detections in results for detection in detections]
        return {
            "COUNTS": np.array([len(detections) for detections in results], dtype=np.int64),
            "CLASSES": np.array([d.class_id for d in found], dtype=np.int64),
            "NAMES": bytes_tensor([d.name.encode() for d in found]),
            "SCORES": np.array([d.score for d in found], dtype=np.float64),
            "BOXES": np.array([d.box for d in found], dtype=np.int64).reshape(-1, 4),
        }

    def decode_results(self, outputs: Tensors, count: int) -> list[list[ObjectDetection]]:
        slices = rows_per_item(outputs, count, "CLASSES", "NAMES", "SCORES", "BOXES")
        classes = require(outputs, "CLASSES", np.int64, 1)
        names = require(outputs, "NAMES", object, 1)
        scores = require(outputs, "SCORES", np.float64, 1)
        boxes = require(outputs, "BOXES", np.int64, 2)
        return [
            [
                ObjectDetection(int(classes[i]), _text(names[i]), float(scores[i]), _box(boxes[i]))
                for i in range(rows.start, rows.stop)
            ]
            for rows in slices
        ]


class EmotionsCodec(Codec[NDArray[np.uint8], NDArray[np.uint8], EmotionScores]):
    name = "emotions"

    def encode_items(self, items: Sequence[NDArray[np.uint8]]) -> Tensors:
        return {"CROPS": np.stack([np.asarray(item, dtype=np.uint8) for item in items])}

    def split_items(self, inputs: Tensors) -> list[NDArray[np.uint8]]:
        crops = require(inputs, "CROPS", np.uint8, 3)
        if crops.shape[1:] != (CROP_SIZE, CROP_SIZE):
            raise OipError(
                f"emotions take {CROP_SIZE}x{CROP_SIZE} grayscale crops, got {list(crops.shape[1:])}"
            )
        return list(crops)

    def run(self, runner: Any, items: Sequence[NDArray[np.uint8]]) -> list[EmotionScores]:
        scores: list[EmotionScores] = runner.predict_batch(items)
        return scores

    def encode_results(self, results: Sequence[EmotionScores]) -> Tensors:
        rows = [[result.scores[name] for name in FER_EMOTIONS] for result in results]
        return {"PROBABILITIES": np.array(rows, dtype=np.float64).reshape(-1, len(FER_EMOTIONS))}

    def decode_results(self, outputs: Tensors, count: int) -> list[EmotionScores]:
        probabilities = require(outputs, "PROBABILITIES", np.float64, 2)
        require_count("PROBABILITIES", probabilities, count)
        if probabilities.shape[1] != len(FER_EMOTIONS):
            raise OipError(f"tensor 'PROBABILITIES' must have {len(FER_EMOTIONS)} columns")
        return [
            EmotionScores({name: float(value) for name, value in zip(FER_EMOTIONS, row, strict=True)})
            for row in probabilities
        ]


class CommenterCodec(Codec[tuple[str, ...], tuple[str, ...], str]):
    """Label lists travel as one JSON array per item (BYTES), comments as UTF-8 text."""

    name = "commenter"

    def encode_items(self, items: Sequence[tuple[str, ...]]) -> Tensors:
        return {
            "LABELS": bytes_tensor([json.dumps(list(item), ensure_ascii=False).encode() for item in items])
        }

    def split_items(self, inputs: Tensors) -> list[tuple[str, ...]]:
        labels = require(inputs, "LABELS", object, 1)
        items: list[tuple[str, ...]] = []
        for index, raw in enumerate(labels):
            try:
                value = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                value = None
            if not isinstance(value, list) or not all(isinstance(label, str) for label in value):
                raise OipError(f"item {index} of 'LABELS' must be a JSON array of strings")
            items.append(tuple(value))
        return items

    def run(self, runner: Any, items: Sequence[tuple[str, ...]]) -> list[str]:
        comments: list[str] = runner.predict_batch(items)
        return comments

    def encode_results(self, results: Sequence[str]) -> Tensors:
        return {"COMMENTS": bytes_tensor([comment.encode() for comment in results])}

    def decode_results(self, outputs: Tensors, count: int) -> list[str]:
        comments = require(outputs, "COMMENTS", object, 1)
        require_count("COMMENTS", comments, count)
        return [_text(comment) for comment in comments]


def _box(row: NDArray[np.int64]) -> tuple[int, int, int, int]:
    x, y, width, height = (int(value) for value in row)
    return x, y, width, height


def _text(raw: Any) -> str:
    try:
        return bytes(raw).decode()
    except UnicodeDecodeError:
        raise OipError("a BYTES element is not UTF-8 text") from None


CODECS: dict[str, Codec[Any, Any, Any]] = {
    codec.name: codec
    for codec in (
        NudeNetCodec(),
        OpenNsfwCodec(),
        FacesCodec(),
        ObjectsCodec(),
        EmotionsCodec(),
        CommenterCodec(),
    )
}
