"""Objects: an ultralytics YOLO detector, by default ``yolov8m-oiv7.pt`` (Open Images V7, 601 classes).

The weights are not shipped with Lumi. A bare file name (the default) is looked for in
``weights_dir``; when it is missing and downloads are allowed, ultralytics' own first-use download
fetches it there from its GitHub release (about 50 MB). Without the file, ``load`` raises
``ModelUnavailable`` saying where to put it, and the caller carries on without objects.

ultralytics is kept quiet and from calling home: ``YOLO_OFFLINE`` (no usage analytics, no PyPI update
checks), ``YOLO_AUTOINSTALL=false`` (it never pip-installs anything) and ``YOLO_VERBOSE=false`` are
set before it is first imported, unless the environment already says otherwise. Its weight download
does not consult ``YOLO_OFFLINE``; Lumi does: an operator (or a test run) that sets ``YOLO_OFFLINE=1``
gets no download attempt. Nothing here draws boxes, so ultralytics never fetches its label fonts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from inference.runners.base import ModelUnavailable

__all__ = [
    "DEFAULT_OBJECT_WEIGHTS",
    "ObjectDetection",
    "YoloObjectRunner",
    "configure_ultralytics",
    "import_yolo",
]

log = logging.getLogger(__name__)

DEFAULT_OBJECT_WEIGHTS: Final = "yolov8m-oiv7.pt"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})

ImageInput = Image.Image | NDArray[np.uint8]


@dataclass(frozen=True)
class ObjectDetection:
    """``name`` is the class name stored in the weights (English for ultralytics' own models)."""

    class_id: int
    name: str
    score: float
    box: tuple[int, int, int, int]


def configure_ultralytics() -> bool:
    """Set ultralytics' quiet, offline-safe defaults before its first import. Returns whether the
    environment allows downloads (``YOLO_OFFLINE`` was not set to a true value by the operator)."""
    downloads_allowed = os.environ.get("YOLO_OFFLINE", "").strip().lower() not in _TRUE
    # ultralytics reads these once, at import; setdefault keeps an operator's explicit choice.
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    return downloads_allowed


def import_yolo() -> Any:
    """ultralytics' ``YOLO`` class, imported with Lumi's defaults and with Pillow left as it was.

    Importing ultralytics replaces ``PIL.Image.open`` for the whole process with a wrapper that, when
    Pillow cannot identify a file, tries to install and register a HEIF plugin (pi-heif). Lumi's image
    decoding (moderation included) relies on Pillow's own answer for files that are not images, and on
    its own list of allowed formats, so Pillow's function is put back. ultralytics does not need the
    wrapper here: it is handed decoded images, never files.
    """
    configure_ultralytics()
    from PIL import Image

    pillow_open = Image.open
    from ultralytics import YOLO  # type: ignore[attr-defined]
    from ultralytics.utils import patches

    # When ultralytics was imported earlier, `pillow_open` is already the wrapper; the module keeps the
    # function it wrapped.
    original = getattr(patches, "_image_open", pillow_open)
    if Image.open is not original:
        Image.open = original
    return YOLO


class YoloObjectRunner:
    """Batched YOLO detection: one list of ``ObjectDetection`` per image, best score first."""

    name = "objects"

    def __init__(
        self,
        device: str = "cpu",
        *,
        weights: str | Path = DEFAULT_OBJECT_WEIGHTS,
        weights_dir: str | Path | None = None,
        download: bool = True,
        image_size: int = 640,
        score_threshold: float = 0.2,
        iou_threshold: float = 0.5,
        max_detections: int = 50,
    ) -> None:
        self._requested_device = device
        self.weights = Path(weights).expanduser()
        self.weights_dir = Path(weights_dir).expanduser() if weights_dir is not None else None
        self.download = download
        self.image_size = image_size
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.class_names: dict[int, str] = {}
        self._model: Any = None
        self._device = "cpu"

    @property
    def device(self) -> str:
        return self._device

    def weights_path(self) -> Path:
        """Where the weights are read from: the path as given, or a bare name inside ``weights_dir``."""
        if self.weights.is_file() or self.weights_dir is None or self.weights.parent != Path("."):
            return self.weights
        return self.weights_dir / self.weights.name

    def load(self) -> None:
        downloads_allowed = configure_ultralytics()
        path = self.weights_path()
        if not path.is_file():
            self._fetch(path, downloads_allowed)
        try:
            import torch

            yolo = import_yolo()
        except ImportError as exc:
            raise ModelUnavailable(
                self.name,
                f"ultralytics is not installed ({exc}); install it with `pip install --no-deps ultralytics`",
            ) from exc
        try:
            model = yolo(str(path), task="detect")
        except Exception as exc:
            raise ModelUnavailable(self.name, f"ultralytics could not load {str(path)!r}: {exc}") from exc
        if model.task != "detect":
            raise ModelUnavailable(
                self.name, f"{str(path)!r} is a {model.task} model, not an object detector"
            )
        self._device = "cuda" if self._requested_device == "cuda" and torch.cuda.is_available() else "cpu"
        self.class_names = {int(key): str(value) for key, value in dict(model.names).items()}
        self._model = model

    def _fetch(self, path: Path, downloads_allowed: bool) -> None:
        hint = (
            f"put the file at {str(path)!r} or point COMMENT_OBJECTS_WEIGHTS at it; "
            "until then photo comments use faces and emotions only"
        )
        if self.weights.parent != Path("."):
            # An explicit path is the operator's own file: nothing to download.
            raise ModelUnavailable(self.name, f"YOLO weights {str(path)!r} not found; {hint}")
        if not (self.download and downloads_allowed):
            raise ModelUnavailable(
                self.name,
                f"YOLO weights {str(path)!r} are missing and downloads are off "
                f"(COMMENT_OBJECTS_DOWNLOAD=false or YOLO_OFFLINE=1); {hint}",
            )
        log.info("downloading YOLO weights %s to %s (first use)", path.name, path.parent)
        try:
            from ultralytics.utils.downloads import attempt_download_asset

            path.parent.mkdir(parents=True, exist_ok=True)
            attempt_download_asset(str(path))
        except Exception as exc:
            raise ModelUnavailable(
                self.name, f"YOLO weights {path.name!r} could not be downloaded ({exc}); {hint}"
            ) from exc
        if not path.is_file():
            raise ModelUnavailable(
                self.name, f"YOLO weights {path.name!r} are not a file ultralytics can download; {hint}"
            )

    def warmup_inputs(self) -> list[object]:
        return [Image.new("RGB", (self.image_size, self.image_size), (128, 128, 128))]

    def predict_batch(self, items: Sequence[ImageInput]) -> list[list[ObjectDetection]]:
        if self._model is None:
            raise RuntimeError("YoloObjectRunner.load() must run before predict_batch()")
        if not items:
            return []
        # PIL images are read as RGB by ultralytics; numpy arrays would be taken as BGR (OpenCV order).
        images = [item if isinstance(item, Image.Image) else Image.fromarray(item) for item in items]
        results = self._model.predict(
            [image if image.mode == "RGB" else image.convert("RGB") for image in images],
            imgsz=self.image_size,
            conf=self.score_threshold,
            iou=self.iou_threshold,
            max_det=self.max_detections,
            device="cuda:0" if self._device == "cuda" else "cpu",
            half=self._device == "cuda",
            verbose=False,
        )
        return [self._detections(result) for result in results]

    def _detections(self, result: Any) -> list[ObjectDetection]:
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return []
        classes = boxes.cls.cpu().numpy().astype(int)
        scores = boxes.conf.cpu().numpy().astype(float)
        corners = boxes.xyxy.cpu().numpy()
        found = [
            ObjectDetection(
                class_id=int(class_id),
                name=self.class_names.get(int(class_id), str(class_id)),
                score=float(score),
                box=(int(x1), int(y1), int(x2 - x1), int(y2 - y1)),
            )
            for class_id, score, (x1, y1, x2, y2) in zip(classes, scores, corners, strict=True)
        ]
        return sorted(found, key=lambda detection: detection.score, reverse=True)

    def close(self) -> None:
        self._model = None
