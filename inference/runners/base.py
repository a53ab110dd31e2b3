"""The interface every in-process model implements, and the error for a model that cannot load.

The session plumbing the ONNX models share is in ``inference.runners.onnx_base``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

__all__ = [
    "ModelUnavailable",
    "Runner",
    "SupportsWarmup",
    "package_file",
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
