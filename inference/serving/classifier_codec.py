"""The custom classifiers on the wire: ``classifier-<id>``, one model per registration.

Both sides know a registration by its ``ClassifierSpec``: its model name, the SHA-256 of its model file,
its input size and its classes (the gateway from the registry it reads, the service from the one it
serves from). The gateway resizes each frame once, with the same ``prepare_pixels`` training and the
in-process runner use, and sends uint8 pixels at the classifier's input size, with the digest of the
registration it means; the service refuses pixels of another size, and answers for another digest with
a message instead of another model's scores (``ClassifierFamily``). Results come back as one row of
class probabilities per image, in the registration's class order.

``CLASSIFIER_FAMILY`` and ``is_classifier_model`` route the names to the service's ``classifiers``
deployment, which reads the registrations through a ``ClassifierSource``; this module needs no Ray.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
from numpy.typing import NDArray

from inference.classifier import ClassifierInput, ClassScores, prepare_pixels
from inference.serving.codecs import Codec
from inference.serving.oip import OipError
from inference.serving.tensors import Tensors, bytes_tensor, require, require_count

__all__ = [
    "CLASSIFIER_FAMILY",
    "DIGEST_TENSOR",
    "ClassifierCodec",
    "ClassifierSource",
    "ClassifierSourceFactory",
    "ClassifierSpec",
    "asked_digest",
    "is_classifier_model",
]

CLASSIFIER_FAMILY: Final = "classifiers"
DIGEST_TENSOR: Final = "MODEL_SHA256"
_MODEL_NAME: Final = re.compile(r"classifier-[1-9][0-9]{0,17}")
_DIGEST: Final = re.compile(r"[0-9a-f]{64}")


def is_classifier_model(name: str) -> bool:
    """Whether ``name`` is a custom classifier's model name, ``classifier-<id>``."""
    return _MODEL_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class ClassifierSpec:
    """A registered classifier as both sides of the wire know it."""

    model: str
    sha256: str
    input_size: tuple[int, int]
    classes: tuple[str, ...]
    positive_class: str

    @property
    def short_digest(self) -> str:
        return self.sha256[:12]


class ClassifierSource(Protocol):
    """The classifier registry as the service reads it. Blocking calls run in a thread."""

    @property
    def description(self) -> str:
        """Where the registry is, for messages."""
        ...

    async def registrations(self, *, fresh: bool = False) -> Mapping[str, ClassifierSpec]:
        """The registered classifiers by model name; ``fresh`` reads the registry now."""
        ...

    def model_folder(self, model: str) -> Path:
        """A local folder holding the model, its model file checked against the registration's SHA-256;
        ``ModelUnavailable`` when it cannot be had as registered."""
        ...

    def forget(self, model: str) -> None:
        """The service no longer serves ``model``: drop its local copy, if the source made one."""
        ...

    def close(self) -> None: ...


ClassifierSourceFactory = Callable[[], ClassifierSource]


def asked_digest(inputs: Tensors) -> str:
    """The registration digest a request names (its ``MODEL_SHA256`` tensor; empty for a registration
    recorded without one)."""
    tensor = require(inputs, DIGEST_TENSOR, object, 1)
    require_count(DIGEST_TENSOR, tensor, 1)
    digest = bytes(tensor[0]).decode("ascii", errors="replace")
    if digest and _DIGEST.fullmatch(digest) is None:
        raise OipError(f"tensor {DIGEST_TENSOR!r} must hold one SHA-256 digest in lowercase hex, or nothing")
    return digest


class ClassifierCodec(Codec[ClassifierInput, NDArray[np.uint8], ClassScores]):
    """``PIXELS`` uint8 (n, height, width, 3) at the classifier's input size and ``MODEL_SHA256`` BYTES
    (1) in; ``PROBABILITIES`` fp32 (n, classes) out."""

    def __init__(self, spec: ClassifierSpec) -> None:
        self.spec = spec
        self.name = spec.model

    # Gateway side.
    def encode_items(self, items: Sequence[ClassifierInput]) -> Tensors:
        height, width = self.spec.input_size
        pixels = [prepare_pixels(item, self.spec.input_size) for item in items]
        return {
            "PIXELS": np.stack(pixels) if pixels else np.zeros((0, height, width, 3), dtype=np.uint8),
            DIGEST_TENSOR: bytes_tensor([self.spec.sha256.encode("ascii")]),
        }

    def decode_results(self, outputs: Tensors, count: int) -> list[ClassScores]:
        probabilities = require(outputs, "PROBABILITIES", np.float32, 2)
        require_count("PROBABILITIES", probabilities, count)
        if probabilities.shape[1] != len(self.spec.classes):
            raise OipError(
                f"tensor 'PROBABILITIES' must have {len(self.spec.classes)} columns "
                f"(the classes of {self.name}), got {probabilities.shape[1]}"
            )
        return [self._scores(row) for row in probabilities]

    # Service side.
    def split_items(self, inputs: Tensors) -> list[NDArray[np.uint8]]:
        pixels = require(inputs, "PIXELS", np.uint8, 4)
        height, width = self.spec.input_size
        if pixels.shape[1:] != (height, width, 3):
            raise OipError(
                f"{self.name} takes {height}x{width} RGB pixels (its input size), "
                f"got {list(pixels.shape[1:])}"
            )
        return list(pixels)

    def run(self, runner: Any, items: Sequence[NDArray[np.uint8]]) -> list[ClassScores]:
        rows = runner.predict_array(np.stack(items).astype(np.float32))
        return [self._scores(row) for row in rows]

    def encode_results(self, results: Sequence[ClassScores]) -> Tensors:
        rows = [[result.scores[name] for name in self.spec.classes] for result in results]
        return {"PROBABILITIES": np.array(rows, dtype=np.float32).reshape(-1, len(self.spec.classes))}

    def _scores(self, row: NDArray[Any]) -> ClassScores:
        return ClassScores(
            scores={name: float(value) for name, value in zip(self.spec.classes, row, strict=True)},
            positive_class=self.spec.positive_class,
        )
