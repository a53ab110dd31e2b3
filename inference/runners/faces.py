"""Face boxes: MTCNN (the weights ``facenet-pytorch`` ships) or OpenCV's frontal-face Haar cascade.

MTCNN is the default when ``facenet-pytorch`` is installed: on the package photos the Haar cascade
misses faces turned a little sideways (Zidane in ultralytics' ``zidane.jpg``) and finds "faces" in
blurred crowds and flower petals, while MTCNN finds both people there and nothing in photos without
any. The cascade needs nothing beyond OpenCV, so it stays as the fallback (``detector="haar"``, or
``"auto"`` without facenet-pytorch).

Both are batched per call: MTCNN runs same-sized images as one tensor batch; the cascade has no batch
form, so it loops inside the call (on the model's own thread, off the event loop either way).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from inference.runners.base import ModelUnavailable

__all__ = ["FaceBox", "FaceDetector", "FaceRunner", "ImageInput"]

log = logging.getLogger(__name__)

ImageInput = Image.Image | NDArray[np.uint8]
FaceDetector = Literal["auto", "mtcnn", "haar"]

_HAAR_FILE: Final = "haarcascade_frontalface_default.xml"
_MTCNN_HINT: Final = "pip install --no-deps 'facenet-pytorch>=2.6,<3'"
# MTCNN's smallest candidate face. Its image pyramid starts at this size; an image whose shorter side is
# under it gets no pyramid level at all, and facenet-pytorch then fails on the empty pyramid.
_MTCNN_MIN_FACE_PX: Final = 20


@dataclass(frozen=True)
class FaceBox:
    """A face in image pixels. ``score`` is MTCNN's probability, or the cascade's final-stage weight
    divided by ``haar_min_weight`` (so 1.0 is the acceptance line for both)."""

    x: int
    y: int
    width: int
    height: int
    score: float


class FaceRunner:
    """Faces per image, largest first. Faces narrower than ``min_face_px`` are dropped: the emotion
    model reads 64x64 crops, and a 15-pixel face in a crowd says nothing about anyone's mood."""

    name = "faces"

    def __init__(
        self,
        device: str = "cpu",
        *,
        detector: FaceDetector = "auto",
        min_score: float = 0.9,
        min_face_px: int = 24,
        haar_min_weight: float = 3.0,
    ) -> None:
        self._requested_device = device
        self.detector: FaceDetector = detector
        self.min_score = min_score
        self.min_face_px = min_face_px
        self.haar_min_weight = haar_min_weight
        self._mtcnn: Any = None
        self._cascade: Any = None
        self._device = "cpu"

    @property
    def device(self) -> str:
        return self._device

    def load(self) -> None:
        if self.detector in ("auto", "mtcnn"):
            try:
                self._load_mtcnn()
                return
            except ImportError as exc:
                if self.detector == "mtcnn":
                    raise ModelUnavailable(
                        self.name,
                        f"facenet-pytorch is not installed ({exc}); install it with `{_MTCNN_HINT}`",
                    ) from exc
                log.info("facenet-pytorch is not installed; faces are found with OpenCV's Haar cascade")
        self._load_haar()

    def _load_mtcnn(self) -> None:
        import torch
        from facenet_pytorch import MTCNN

        use_cuda = self._requested_device == "cuda" and torch.cuda.is_available()
        self._device = "cuda" if use_cuda else "cpu"
        # Candidates down to 20 px; `min_face_px` filters afterwards so both detectors drop the same.
        self._mtcnn = MTCNN(
            keep_all=True, min_face_size=_MTCNN_MIN_FACE_PX, device=torch.device(self._device)
        )
        self.detector = "mtcnn"

    def _load_haar(self) -> None:
        import cv2

        path = f"{cv2.data.haarcascades}{_HAAR_FILE}"  # type: ignore[attr-defined]
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise ModelUnavailable(
                self.name,
                f"OpenCV could not read its face cascade {path!r}; "
                "install `opencv-python-headless<5` (5.x ships no cascades)",
            )
        self._cascade = cascade
        self._device = "cpu"
        self.detector = "haar"

    def warmup_inputs(self) -> list[object]:
        return [Image.new("RGB", (64, 64), (128, 128, 128))]

    def predict_batch(self, items: Sequence[ImageInput]) -> list[list[FaceBox]]:
        if self._mtcnn is None and self._cascade is None:
            raise RuntimeError("FaceRunner.load() must run before predict_batch()")
        images = [_rgb(item) for item in items]
        # An image narrower than the smallest face kept cannot hold one: it gets no face without asking
        # the detector, which MTCNN could not answer for it anyway (see _MTCNN_MIN_FACE_PX).
        smallest = max(self.min_face_px, _MTCNN_MIN_FACE_PX if self._mtcnn is not None else 1)
        searched = [index for index, image in enumerate(images) if min(image.size) >= smallest]
        found: list[list[FaceBox]] = [[] for _ in images]
        if self._mtcnn is not None:
            detected = self._detect_mtcnn([images[index] for index in searched])
        else:
            detected = [self._detect_haar(images[index]) for index in searched]
        for index, faces in zip(searched, detected, strict=True):
            found[index] = sorted(
                (face for face in faces if min(face.width, face.height) >= self.min_face_px),
                key=lambda face: face.width * face.height,
                reverse=True,
            )
        return found

    def close(self) -> None:
        self._mtcnn = None
        self._cascade = None

    def _detect_mtcnn(self, images: list[Image.Image]) -> list[list[FaceBox]]:
        # MTCNN stacks a list of images into one tensor, which needs one size per call.
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, image in enumerate(images):
            by_size[image.size].append(index)
        results: list[list[FaceBox]] = [[] for _ in images]
        for indices in by_size.values():
            group = [images[i] for i in indices]
            boxes, probs = self._mtcnn.detect(group if len(group) > 1 else group[0])
            if len(group) == 1:
                boxes, probs = [boxes], [probs]
            for index, image_boxes, image_probs in zip(indices, boxes, probs, strict=True):
                results[index] = _mtcnn_faces(image_boxes, image_probs, images[index].size, self.min_score)
        return results

    def _detect_haar(self, image: Image.Image) -> list[FaceBox]:
        import cv2

        gray = np.asarray(image.convert("L"))
        smallest = max(self.min_face_px, int(min(gray.shape) * 0.06))
        boxes, _levels, weights = self._cascade.detectMultiScale3(
            gray,
            scaleFactor=1.1,
            minNeighbors=5,
            minSize=(smallest, smallest),
            flags=cv2.CASCADE_SCALE_IMAGE,
            outputRejectLevels=True,
        )
        faces = []
        # The final-stage weight separates real faces (about 4-6 on the package photos) from textures the
        # cascade mistakes for faces (below about 2.5); `minNeighbors` alone lets the latter through.
        for (x, y, w, h), weight in zip(np.asarray(boxes).reshape(-1, 4), np.ravel(weights), strict=True):
            if float(weight) >= self.haar_min_weight:
                faces.append(FaceBox(int(x), int(y), int(w), int(h), float(weight) / self.haar_min_weight))
        return faces


def _rgb(item: ImageInput) -> Image.Image:
    image = item if isinstance(item, Image.Image) else Image.fromarray(item)
    return image if image.mode == "RGB" else image.convert("RGB")


def _mtcnn_faces(boxes: Any, probs: Any, size: tuple[int, int], min_score: float) -> list[FaceBox]:
    if boxes is None:
        return []
    width, height = size
    faces = []
    for box, prob in zip(np.asarray(boxes, dtype=np.float64), np.ravel(np.asarray(probs)), strict=True):
        if prob is None or float(prob) < min_score:
            continue
        x1, y1 = max(0.0, float(box[0])), max(0.0, float(box[1]))
        x2, y2 = min(float(width), float(box[2])), min(float(height), float(box[3]))
        if x2 - x1 >= 1 and y2 - y1 >= 1:
            faces.append(FaceBox(round(x1), round(y1), round(x2 - x1), round(y2 - y1), float(prob)))
    return faces
