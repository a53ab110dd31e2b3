"""The part every ONNX model runner shares: session creation, device choice, threads, load and close.

NudeNet and open_nsfw are both single-input ONNX files run through onnxruntime; they differ only in
where their weights come from, which file they accept and how images become tensors. ``OnnxRunner``
holds the rest once, so the session options (thread counts, no spinning, CUDA with CPU fallback) are
the same for every ONNX model. A subclass names its default weights and checks the loaded session;
it still meets the ``Runner`` protocol of ``inference.runners.base``, which stays the one contract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from inference.device import onnx_providers
from inference.runners.base import ModelUnavailable

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

__all__ = [
    "OnnxRunner",
    "dynamic_batch",
    "onnx_session",
    "rgb_image",
    "run_chunked",
    "session_device",
]


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
    """The device a session actually runs on: onnxruntime falls back to CPU when CUDA cannot start."""
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


def rgb_image(item: Image.Image | NDArray[np.uint8]) -> Image.Image:
    """``item`` as an RGB PIL image: the runners accept PIL images and decoded uint8 arrays alike."""
    image = item if isinstance(item, Image.Image) else Image.fromarray(item)
    return image if image.mode == "RGB" else image.convert("RGB")


class OnnxRunner(ABC):
    """A runner over one single-input ONNX file; subclasses add preprocessing and ``predict_batch``.

    ``device`` is the one asked for; until ``load`` it is what ``device`` reports, afterwards the
    session's own device (CPU when CUDA was asked for but could not be used). ``intra_op_threads``
    sizes onnxruntime's pool (None: its default). A model whose batch dimension is dynamic is fed up
    to ``max_onnx_batch`` images per call, one with a fixed batch dimension one at a time.
    """

    name: str

    def __init__(
        self,
        device: str = "cpu",
        *,
        model_path: str | Path | None = None,
        intra_op_threads: int | None = None,
        max_onnx_batch: int = 32,
    ) -> None:
        self._requested_device = device
        self._model_path = Path(model_path) if model_path is not None else None
        self._intra_op_threads = intra_op_threads
        self._max_onnx_batch = max_onnx_batch
        self._session: InferenceSession | None = None
        self._input_name = ""
        self._dynamic_batch = False

    @property
    def device(self) -> str:
        return session_device(self._session) if self._session is not None else self._requested_device

    @abstractmethod
    def default_model_path(self) -> Path:
        """Where the weights are when no ``model_path`` was given (raises ``ModelUnavailable``)."""

    @abstractmethod
    def check_session(self, session: InferenceSession, path: Path) -> None:
        """Raise ``ModelUnavailable`` when ``session`` is not the model this runner expects.

        A wrong file would otherwise load fine and fail, or give nonsense, on the first batch.
        """

    def load(self) -> None:
        path = self._model_path or self.default_model_path()
        session = onnx_session(
            path, model=self.name, device=self._requested_device, intra_op_threads=self._intra_op_threads
        )
        self.check_session(session, path)
        self._input_name = session.get_inputs()[0].name
        self._dynamic_batch = dynamic_batch(session)
        self._session = session

    def close(self) -> None:
        self._session = None

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """The model's first output over ``batch``, in chunks the model accepts."""
        if self._session is None:
            raise RuntimeError(f"{type(self).__name__}.load() must run before predict_batch()")
        step = self._max_onnx_batch if self._dynamic_batch else 1
        return run_chunked(self._session, self._input_name, batch, step=step)
