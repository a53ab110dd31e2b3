"""From a photo to comment labels: faces and their emotions, plus objects, most confident first.

Faces and objects are looked for at the same time, each through its model's batcher; every face crop
of every photo in flight then goes through the emotion model's batcher, so concurrent photos share
batches at every stage.

Emotions: the comment vocabulary has four, 기쁨 (happy), 슬픔 (sad), 분노 (angry) and 공포 (fear).
A face gets one of them when it is the model's strongest of all seven emotions and reaches
``emotion_min_score``. A face whose strongest emotion is neutral, surprise or disgust adds no label:
the training data has no word for them, and borrowing the nearest one (calling surprise "fear") would
put a feeling into the comment that the photo does not show. The photo's objects still count.

Objects: detections from ``object_min_score`` whose class is in the label table and not generic (see
``inference.labels``). Each label keeps its best score over faces/boxes; the list is capped at
``max_labels``. When a model cannot load, the registry logs why (once) and perception goes on without it
until Lumi restarts, so a missing weights file costs one log line, not one per photo.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from inference.device import Device
from inference.labels import Label, Language, ObjectVocabulary, emotion_label, oiv7_vocabulary, select_labels
from inference.registry import BatchConfig, ModelKey, ModelRegistry, ModelUnavailable
from inference.runners.emotions import EmotionRunner, EmotionScores, face_crop
from inference.runners.faces import FaceBox, FaceDetector, FaceRunner
from inference.runners.objects import DEFAULT_OBJECT_WEIGHTS, ObjectDetection, YoloObjectRunner

__all__ = [
    "EMOTIONS",
    "FACES",
    "OBJECTS",
    "Perceiver",
    "Perception",
    "PerceptionConfig",
    "SeenFace",
    "SeenObject",
    "emotion_for",
    "merge_labels",
    "register_perception_models",
]

log = logging.getLogger(__name__)

ImageInput = Image.Image | NDArray[np.uint8]
A = TypeVar("A")
B = TypeVar("B")
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

FACES: Final = ModelKey[ImageInput, list[FaceBox]]("faces")
EMOTIONS: Final = ModelKey[NDArray[np.uint8], EmotionScores]("emotions")
OBJECTS: Final = ModelKey[ImageInput, list[ObjectDetection]]("objects")


@dataclass(frozen=True)
class PerceptionConfig:
    emotion_min_score: float = 0.4
    object_min_score: float = 0.35
    max_labels: int = 5


@dataclass(frozen=True)
class SeenFace:
    box: FaceBox
    emotions: EmotionScores | None
    label: Label | None


@dataclass(frozen=True)
class SeenObject:
    detection: ObjectDetection
    # None when the class is generic, unknown to the table, or under the threshold.
    label: Label | None


@dataclass(frozen=True)
class Perception:
    faces: list[SeenFace]
    objects: list[SeenObject]
    labels: list[Label]
    # Models that could not run for this photo (e.g. "objects" without YOLO weights).
    missing: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def names(self, language: Language) -> list[str]:
        return [label.name(language) for label in self.labels]


def emotion_for(scores: EmotionScores, min_score: float) -> Label | None:
    """The label for a face: its strongest emotion, when that is one of the four and strong enough."""
    name, score = scores.top
    if score < min_score:
        return None
    return emotion_label(name, score)


def merge_labels(perceptions: Sequence[Perception], max_labels: int) -> list[Label]:
    """One label list for several photos of a post: best score per label, most confident first."""
    return select_labels((label for p in perceptions for label in p.labels), max_labels)


def register_perception_models(
    registry: ModelRegistry,
    *,
    face_detector: FaceDetector = "auto",
    objects_weights: str | Path = DEFAULT_OBJECT_WEIGHTS,
    objects_weights_dir: Path | None = None,
    objects_download: bool = True,
    batch: BatchConfig | None = None,
) -> None:
    """Register the face, emotion and object models (loaded on first use); skips names already there."""

    def faces(device: Device) -> FaceRunner:
        return FaceRunner(device, detector=face_detector)

    def emotions(device: Device) -> EmotionRunner:
        return EmotionRunner(device)

    def objects(device: Device) -> YoloObjectRunner:
        # Detections under the comment threshold are still reported (for `lumi comment` and logs).
        return YoloObjectRunner(
            device, weights=objects_weights, weights_dir=objects_weights_dir, download=objects_download
        )

    if not registry.is_registered(FACES):
        registry.register(FACES, faces, batch=batch)
    if not registry.is_registered(EMOTIONS):
        # Faces arrive a few per photo; a larger batch lets a burst of photos share one call.
        registry.register(EMOTIONS, emotions, batch=batch or BatchConfig(max_batch_size=64))
    if not registry.is_registered(OBJECTS):
        registry.register(OBJECTS, objects, batch=batch or BatchConfig(max_batch_size=8))


class Perceiver:
    """Turns one RGB image into a ``Perception``. The models must be registered in ``registry``."""

    def __init__(
        self,
        registry: ModelRegistry,
        config: PerceptionConfig | None = None,
        *,
        vocabulary: ObjectVocabulary | None = None,
    ) -> None:
        self.registry = registry
        self.config = config or PerceptionConfig()
        self.vocabulary = vocabulary or oiv7_vocabulary()
        # A model that cannot load is asked once; its absence is logged once, then skipped until restart.
        self.unavailable: dict[str, str] = {}

    async def perceive(self, image: Image.Image) -> Perception:
        started = time.perf_counter()
        missing: list[str] = []
        seen_faces, detections = await _both(self._faces(image, missing), self._objects(image, missing))
        seen_objects = [self._seen(detection) for detection in detections]
        candidates = [face.label for face in seen_faces if face.label is not None]
        candidates += [seen.label for seen in seen_objects if seen.label is not None]
        return Perception(
            faces=seen_faces,
            objects=seen_objects,
            labels=select_labels(candidates, self.config.max_labels),
            missing=missing,
            elapsed_s=time.perf_counter() - started,
        )

    async def _faces(self, image: Image.Image, missing: list[str]) -> list[SeenFace]:
        boxes = await self._optional(FACES, image, missing)
        if not boxes:
            return []
        crops = await asyncio.to_thread(_crops, image, boxes)
        emotions = await asyncio.gather(*(self._emotion(crop, missing) for crop in crops))
        return [
            SeenFace(box, scores, emotion_for(scores, self.config.emotion_min_score) if scores else None)
            for box, scores in zip(boxes, emotions, strict=True)
        ]

    async def _objects(self, image: Image.Image, missing: list[str]) -> list[ObjectDetection]:
        found = await self._optional(OBJECTS, image, missing)
        return found or []

    async def _emotion(self, crop: NDArray[np.uint8], missing: list[str]) -> EmotionScores | None:
        # Bound to a name first: mypy infers the key's result type from it, not from this return type.
        scores = await self._optional(EMOTIONS, crop, missing)
        return scores

    def _seen(self, detection: ObjectDetection) -> SeenObject:
        if detection.score < self.config.object_min_score:
            return SeenObject(detection, None)
        known = self.vocabulary.by_name(detection.name)
        if known is None or known.generic:
            return SeenObject(detection, None)
        return SeenObject(detection, known.label(detection.score))

    async def _optional(self, key: ModelKey[I, R], item: I, missing: list[str]) -> R | None:
        """The model's answer, or None when the model cannot load (noted in ``missing``)."""
        if key.name in self.unavailable:
            _note(missing, key.name)
            return None
        try:
            handle = await self.registry.get(key)
        except ModelUnavailable as exc:
            if key.name not in self.unavailable:
                self.unavailable[key.name] = exc.reason
                # The registry has just logged why; this only records that the model is not asked again.
                log.debug("%s are off until Lumi restarts", _WHAT.get(key.name, key.name))
            _note(missing, key.name)
            return None
        try:
            return await handle.predict(item)
        except ModelUnavailable as exc:
            # A model that loaded but cannot answer now (the inference service is down): missing for
            # this photo only; the next one asks again.
            log.info("%s skipped for this photo: %s", _WHAT.get(key.name, key.name), exc.reason)
            _note(missing, key.name)
            return None


_WHAT: Final = {
    "faces": "faces (and so emotions) in photo comments",
    "emotions": "face emotions in photo comments",
    "objects": "objects in photo comments",
}


def _note(missing: list[str], name: str) -> None:
    if name not in missing:
        missing.append(name)


def _crops(image: Image.Image, boxes: Sequence[FaceBox]) -> list[NDArray[np.uint8]]:
    gray = np.asarray(image.convert("L"))
    return [face_crop(gray, (box.x, box.y, box.width, box.height)) for box in boxes]


async def _both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Run two awaitables at once; when one fails the other is cancelled rather than left running."""
    tasks = (asyncio.ensure_future(first), asyncio.ensure_future(second))
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return tasks[0].result(), tasks[1].result()
