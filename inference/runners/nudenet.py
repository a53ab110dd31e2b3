"""NudeNet body-part detector (YOLOv8n at 320 px, 18 labels) over the ONNX file the ``nudenet`` package ships.

NudeNet's own API decodes one image at a time through OpenCV. Here images arrive already decoded and
the whole batch goes through one ONNX call: the model's batch dimension is dynamic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from inference.runners.base import ModelUnavailable, package_file
from inference.runners.onnx_base import OnnxRunner, rgb_image

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

__all__ = ["EXPOSED_LABELS", "NUDENET_LABELS", "Detection", "NudeNetRunner"]

# Class order of the model's output rows, as the nudenet package defines it.
NUDENET_LABELS: Final = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
EXPOSED_LABELS: Final = frozenset(label for label in NUDENET_LABELS if label.endswith("_EXPOSED"))

ImageInput = Image.Image | NDArray[np.uint8]


@dataclass(frozen=True)
class Detection:
    """One detected region. ``box`` is (x, y, width, height) in the input image's pixels."""

    label: str
    score: float
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class _Letterbox:
    scale: float
    width: int
    height: int


class NudeNetRunner(OnnxRunner):
    """Batched NudeNet detection. Results: one list of ``Detection`` per image, best score first.

    ``score_threshold`` and ``iou_threshold`` default to what NudeNet itself applies (scores from 0.25,
    class-agnostic NMS at IoU 0.45).

    Channel order: the detector is an Ultralytics YOLOv8 export, trained on RGB. nudenet 3.4's own
    reader ends up feeding BGR (a 3-channel image goes through ``COLOR_RGBA2BGR`` and then ``swapRB``),
    which lowers its scores: on the package photos true face detections score 0.81-0.83 with RGB and
    0.62-0.72 with BGR. RGB is the default; ``bgr_input=True`` comes close to nudenet's own numbers
    (the rest of the gap is OpenCV's resize, which does not antialias).
    """

    name = "nudenet"

    def __init__(
        self,
        device: str = "cpu",
        *,
        model_path: str | Path | None = None,
        input_size: int = 320,
        score_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        intra_op_threads: int | None = None,
        max_onnx_batch: int = 32,
        bgr_input: bool = False,
    ) -> None:
        super().__init__(
            device, model_path=model_path, intra_op_threads=intra_op_threads, max_onnx_batch=max_onnx_batch
        )
        self.bgr_input = bgr_input
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold

    def default_model_path(self) -> Path:
        return package_file(
            "nudenet", "320n.onnx", model=self.name, install_hint="pip install 'nudenet>=3.4,<3.5'"
        )

    def check_session(self, session: InferenceSession, path: Path) -> None:
        inputs, outputs = session.get_inputs(), session.get_outputs()
        rows = outputs[0].shape[1] if outputs and len(outputs[0].shape) == 3 else None
        if len(inputs) != 1 or rows != 4 + len(NUDENET_LABELS):
            raise ModelUnavailable(
                self.name, f"{str(path)!r} is not a NudeNet detector (unexpected inputs/outputs)"
            )

    def warmup_inputs(self) -> list[object]:
        return [Image.new("RGB", (self.input_size, self.input_size), (128, 128, 128))]

    def predict_batch(self, items: Sequence[ImageInput]) -> list[list[Detection]]:
        if not items:
            return []
        letterboxed = [self.letterbox(item) for item in items]
        canvases = np.stack([canvas for canvas, _size in letterboxed])
        sizes = np.array([size for _canvas, size in letterboxed], dtype=np.int64)
        return self.predict_letterboxed(canvases, sizes)

    def letterbox(self, item: ImageInput) -> tuple[NDArray[np.uint8], tuple[int, int]]:
        """The image's longest side scaled to the input size, padded right/bottom with black as NudeNet
        does (RGB, uint8, input size square), and the image's (width, height).

        This is all the model needs of an image: a gateway sends it to the inference service.
        """
        image = rgb_image(item)
        size = self.input_size
        scale = size / max(image.size)
        resized = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
            Image.Resampling.BILINEAR,
        )
        canvas = np.zeros((size, size, 3), dtype=np.uint8)
        canvas[: resized.height, : resized.width] = np.asarray(resized, dtype=np.uint8)
        return canvas, (image.width, image.height)

    def predict_letterboxed(
        self, canvases: NDArray[np.uint8], sizes: NDArray[np.int64]
    ) -> list[list[Detection]]:
        """Detections for ``letterbox`` outputs: canvases (n, size, size, 3) and (width, height) rows."""
        if not len(canvases):
            return []
        raw = self._infer(self.input_tensor(canvases))
        boxes = [
            _Letterbox(self.input_size / max(int(width), int(height)), int(width), int(height))
            for width, height in sizes
        ]
        return [self._detections(raw[i], box) for i, box in enumerate(boxes)]

    def input_tensor(self, canvases: NDArray[np.uint8]) -> NDArray[np.float32]:
        """The model's input for ``letterbox`` canvases: (n, 3, size, size), scaled to [0, 1]."""
        pixels = canvases.astype(np.float32) * np.float32(1.0 / 255.0)
        if self.bgr_input:
            pixels = pixels[..., ::-1]
        return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))

    def _detections(self, output: NDArray[np.float32], letterbox: _Letterbox) -> list[Detection]:
        # YOLOv8 head: (4 box values + one score per class) x candidate anchors.
        rows = output.T
        class_scores = rows[:, 4:]
        best_class = class_scores.argmax(axis=1)
        best_score = class_scores[np.arange(len(rows)), best_class]
        keep = best_score >= self.score_threshold
        if not keep.any():
            return []
        centre_x, centre_y, box_w, box_h = (rows[keep, i] / letterbox.scale for i in range(4))
        x1 = np.clip(centre_x - box_w / 2, 0, letterbox.width)
        y1 = np.clip(centre_y - box_h / 2, 0, letterbox.height)
        x2 = np.clip(centre_x + box_w / 2, 0, letterbox.width)
        y2 = np.clip(centre_y + box_h / 2, 0, letterbox.height)
        corners = np.stack([x1, y1, x2, y2], axis=1)
        scores = best_score[keep]
        classes = best_class[keep]
        chosen = _nms(corners, scores, self.iou_threshold)
        return [
            Detection(
                label=NUDENET_LABELS[int(classes[i])],
                score=float(scores[i]),
                box=(
                    int(corners[i, 0]),
                    int(corners[i, 1]),
                    int(corners[i, 2] - corners[i, 0]),
                    int(corners[i, 3] - corners[i, 1]),
                ),
            )
            for i in chosen
        ]


def _nms(corners: NDArray[np.float32], scores: NDArray[np.float32], iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; indices of the kept boxes, best score first."""
    areas = (corners[:, 2] - corners[:, 0]) * (corners[:, 3] - corners[:, 1])
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size:
        best = int(order[0])
        kept.append(best)
        rest = order[1:]
        inter_w = np.clip(
            np.minimum(corners[best, 2], corners[rest, 2]) - np.maximum(corners[best, 0], corners[rest, 0]),
            0,
            None,
        )
        inter_h = np.clip(
            np.minimum(corners[best, 3], corners[rest, 3]) - np.maximum(corners[best, 1], corners[rest, 1]),
            0,
            None,
        )
        intersection = inter_w * inter_h
        union = areas[best] + areas[rest] - intersection
        iou = np.where(union > 0, intersection / np.maximum(union, 1e-9), 0.0)
        order = rest[iou <= iou_threshold]
    return kept
