"""Runs only where CUDA is present: the models must land on the GPU and agree with the CPU."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inference.device import cuda_available, onnx_providers, onnxruntime_cuda_available, resolve_device

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cuda_available(), reason="no CUDA device on this machine"),
]


def _photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).convert("RGB")


needs_onnx_cuda = pytest.mark.skipif(
    not onnxruntime_cuda_available(), reason="onnxruntime-gpu is not installed (the CPU build is)"
)


def test_auto_device_picks_cuda() -> None:
    assert resolve_device("auto") == "cuda"


@needs_onnx_cuda
def test_onnx_models_get_the_cuda_provider() -> None:
    assert onnx_providers("cuda")[0] == "CUDAExecutionProvider"


@needs_onnx_cuda
def test_open_nsfw_on_gpu_matches_cpu() -> None:
    from inference.runners.open_nsfw import OpenNsfwRunner

    gpu = OpenNsfwRunner(device="cuda")
    cpu = OpenNsfwRunner(device="cpu")
    gpu.load()
    cpu.load()
    try:
        photos = [_photo(), _photo().rotate(90)]
        np.testing.assert_allclose(gpu.predict_batch(photos), cpu.predict_batch(photos), atol=1e-3)
    finally:
        gpu.close()
        cpu.close()
