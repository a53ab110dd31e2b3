"""The interface every in-process model implements, and the error for a model that cannot load."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from inference.device import onnx_providers

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

__all__ = [
    "ModelUnavailable",
    "Runner",
    "SupportsWarmup",
    "dynamic_batch",
    "onnx_session",
    "package_file",
    "run_chunked",
    "session_device",
]

ItemT = TypeVar("ItemT", contravariant=True)
ResultT = TypeVar("ResultT")


class ModelUnavailable(RuntimeError):
    """A model cannot be used. ``reason`` says what is missing and how to get it."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"Model {name!r} is unavailable: {reason}")
        self.name = name
        self.reason = reason


class Runner(Protocol[ItemT, ResultT]):
    """One model. ``load``, ``predict_batch`` and ``close`` block and run on the model's worker thread.

    ``predict_batch`` returns exactly one result per item, in order.
    """

    @property
    def name(self) -> str: ...

    @property
    def device(self) -> str: ...

    def load(self) -> None: ...

    def predict_batch(self, items: Sequence[ItemT]) -> list[ResultT]: ...

    def close(self) -> None: ...


@runtime_checkable
class SupportsWarmup(Protocol):
    """A runner that can build a representative input; the registry runs it once after ``load``.

    The first call of an ONNX session allocates its buffers and picks kernels; doing that at load time
    keeps it out of the first user's latency.
    """

    def warmup_inputs(self) -> list[object]: ...


def package_file(package: str, filename: str, *, model: str, install_hint: str) -> Path:
    """Path of a weights file shipped inside an installed package, without importing the package.

    Importing e.g. ``nudenet`` would pull in OpenCV just to locate a file; ``find_spec`` does not run
    the package's code.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            model, f"the {package!r} package is not installed; install it with `{install_hint}`"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    raise ModelUnavailable(
        model,
        f"the {package!r} package is installed but its weights file {filename!r} is missing; "
        f"reinstall it with `{install_hint} --force-reinstall`",
    )


def onnx_session(path: Path, *, model: str, device: str, intra_op_threads: int | None) -> InferenceSession:
    """An onnxruntime session on ``device`` (CUDA when asked for and available, else CPU)."""
    if not path.is_file():
        raise ModelUnavailable(model, f"weights file {str(path)!r} not found")
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelUnavailable(
            model, "onnxruntime is not installed; install it with `pip install onnxruntime`"
        ) from exc
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Each model already has its own worker thread; ORT's inter-op pool would only add contention.
    options.inter_op_num_threads = 1
    # Spinning workers would burn the cores the event loop and the other model need between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    try:
        return onnxruntime.InferenceSession(str(path), sess_options=options, providers=onnx_providers(device))
    except Exception as exc:
        raise ModelUnavailable(model, f"onnxruntime could not load {str(path)!r}: {exc}") from exc


def session_device(session: InferenceSession) -> str:
    return "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"


def dynamic_batch(session: InferenceSession) -> bool:
    """Whether the model's first input accepts any batch size (a named or missing leading dimension)."""
    shape = session.get_inputs()[0].shape
    return bool(shape) and not isinstance(shape[0], int)


def run_chunked(
    session: InferenceSession, input_name: str, batch: NDArray[np.float32], *, step: int
) -> NDArray[np.float32]:
    """The first output of ``session`` over ``batch``, fed ``step`` items per call.

    Chunking bounds the activation memory of one call; a model with a fixed batch dimension needs
    ``step=1``.
    """
    chunks = [
        session.run(None, {input_name: batch[start : start + step]})[0]
        for start in range(0, len(batch), step)
    ]
    return np.concatenate(chunks).astype(np.float32, copy=False)
