from __future__ import annotations

import onnxruntime
import pytest

from inference.device import onnx_providers, parse_device, resolve_device


def test_cpu_is_always_honoured() -> None:
    assert resolve_device("cpu") == "cpu"
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]


def test_auto_picks_cuda_only_when_a_framework_can_use_it() -> None:
    device = resolve_device("auto")
    assert device in ("cpu", "cuda")
    providers = onnx_providers(device)
    assert providers[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert providers == ["CPUExecutionProvider"]


def test_cuda_request_falls_back_to_cpu_providers_without_cuda() -> None:
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA")
    assert onnx_providers("cuda") == ["CPUExecutionProvider"]


def test_device_names_are_validated() -> None:
    assert parse_device(" CUDA ") == "cuda"
    assert parse_device("cuda:0") == "cuda"
    with pytest.raises(ValueError, match="auto"):
        parse_device("tpu")
