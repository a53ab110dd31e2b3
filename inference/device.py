"""Device choice: CUDA when a framework can use it, else CPU.

torch and TensorFlow take seconds (and hundreds of MB) to import, so they are imported only when they
are installed, only when onnxruntime did not already answer the question, and only on a machine with
an NVIDIA driver: on a CPU-only host the answer is "cpu" without importing either.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import sys
from functools import cache
from typing import Literal

from inference.tensorflow_support import import_torch_side

__all__ = [
    "DevicePreference",
    "cuda_available",
    "onnx_providers",
    "onnxruntime_cuda_available",
    "parse_device",
    "resolve_device",
    "tensorflow_gpu_available",
    "torch_cuda_available",
]

log = logging.getLogger(__name__)

DevicePreference = Literal["auto", "cpu", "cuda"]
Device = Literal["cpu", "cuda"]

_CUDA_PROVIDER = "CUDAExecutionProvider"
_CPU_PROVIDER = "CPUExecutionProvider"


def parse_device(value: str) -> DevicePreference:
    lowered = value.strip().lower()
    if lowered in ("auto", "cpu", "cuda"):
        return lowered  # type: ignore[return-value]
    if lowered.startswith("cuda:"):
        return "cuda"
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', not {value!r}")


def _nvidia_driver_present() -> bool:
    return (
        os.path.exists("/proc/driver/nvidia/version")
        or os.path.exists("/dev/nvidia0")
        or shutil.which("nvidia-smi") is not None
        or os.path.exists("/usr/lib/wsl/lib/nvidia-smi")
    )


def _installed(module: str) -> bool:
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@cache
def onnxruntime_cuda_available() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return _CUDA_PROVIDER in onnxruntime.get_available_providers() and _nvidia_driver_present()


@cache
def torch_cuda_available() -> bool:
    if not _installed("torch") or not _nvidia_driver_present():
        return False
    try:
        torch = importlib.import_module("torch")
        return bool(torch.cuda.is_available())
    except Exception as exc:
        log.warning("torch is installed but could not be asked about CUDA: %s", exc)
        return False


@cache
def tensorflow_gpu_available() -> bool:
    if not _installed("tensorflow") or not _nvidia_driver_present():
        return False
    if _installed("torch"):
        torch_cuda_available()
    import_torch_side()  # before TensorFlow: see inference.tensorflow_support
    try:
        tf = importlib.import_module("tensorflow")
        return bool(tf.config.list_physical_devices("GPU"))
    except Exception as exc:
        log.warning("TensorFlow is installed but could not be asked about GPUs: %s", exc)
        return False


def cuda_available() -> bool:
    """Whether any installed framework can run on CUDA here (cheapest check first)."""
    return onnxruntime_cuda_available() or torch_cuda_available() or tensorflow_gpu_available()


def resolve_device(preference: str = "auto") -> Device:
    """Turn ``auto|cpu|cuda`` into the device to use. ``cuda`` without CUDA falls back to CPU, logged."""
    choice = parse_device(preference)
    if choice == "cpu":
        return "cpu"
    if cuda_available():
        return "cuda"
    if choice == "cuda":
        log.warning("device 'cuda' was requested but no framework here can use CUDA; using the CPU")
    return "cpu"


def onnx_providers(device: str) -> list[str]:
    """onnxruntime execution providers for ``device``, always ending with the CPU fallback."""
    if parse_device(device) != "cpu" and onnxruntime_cuda_available():
        return [_CUDA_PROVIDER, _CPU_PROVIDER]
    return [_CPU_PROVIDER]
