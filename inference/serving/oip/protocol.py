"""The Open Inference Protocol's vocabulary: header names, datatypes, caps, messages and their error.

Every cap bounds what a peer can make Lumi allocate before anything is read whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

HEADER_LENGTH: Final = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE: Final = "application/octet-stream"
JSON_CONTENT_TYPE: Final = "application/json"
# The JSON part describes tensors; their pixels travel as binary data. A megabyte of description is
# already thousands of tensors.
MAX_HEADER_BYTES: Final = 1 << 20
MAX_TENSORS: Final = 64
MAX_RANK: Final = 8

# OIP datatype name -> numpy dtype (little-endian). BYTES is an object array of ``bytes``.
DATATYPES: Final[Mapping[str, np.dtype[Any]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}


class OipError(ValueError):
    """A body that does not follow the protocol; the message says what is wrong and is safe to return."""


Tensors = dict[str, NDArray[Any]]


@dataclass(frozen=True)
class InferRequest:
    inputs: Tensors
    id: str | None = None
    # The outputs the client asked for (empty: all of them) and whether it wants them as binary data.
    outputs: list[str] = field(default_factory=list)
    binary_outputs: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferResponse:
    model_name: str
    outputs: Tensors
    id: str | None = None
    model_version: str | None = None


def parameters_of(entry: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The ``parameters`` object of a request, output or tensor entry (``{}`` when it has none)."""
    parameters = entry.get("parameters", {})
    if not isinstance(parameters, dict):
        raise OipError(f"the {what}'s 'parameters' must be an object")
    return parameters
