"""The Open Inference Protocol (KServe v2 REST, the protocol Triton speaks) with binary tensor data.

A request or response body is a JSON object, optionally followed by the raw bytes of its tensors; the
``Inference-Header-Content-Length`` header then gives the JSON part's length. Tensor bytes are
little-endian, row major, without padding; a BYTES element is a 4-byte little-endian length followed by
its bytes. Lumi sends every tensor as binary data (images are large, and JSON numbers lose nothing
only slowly) and reads both forms, so any OIP client or server can talk to it.

Everything read here comes from the network: lengths, shapes and sizes are checked against each other
and against caps before anything is allocated, and every refusal is an ``OipError`` whose message says
what was wrong, which the server returns as ``{"error": ...}`` with status 400.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BINARY_CONTENT_TYPE",
    "DATATYPES",
    "HEADER_LENGTH",
    "MAX_HEADER_BYTES",
    "InferRequest",
    "InferResponse",
    "OipError",
    "decode_request",
    "decode_response",
    "encode_error",
    "encode_request",
    "encode_response",
]

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
_NAME_OF_KIND: Final = {
    (dtype.kind, dtype.itemsize): name for name, dtype in DATATYPES.items() if name != "BYTES"
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


# -- encoding ------------------------------------------------------------------------------------------


def encode_request(
    inputs: Mapping[str, NDArray[Any]],
    *,
    outputs: Sequence[str] = (),
    request_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of an inference request with every input as binary data; ``outputs`` are asked
    for as binary data too (none named: the server sends all of them)."""
    described, blobs = _describe(inputs, key="inputs")
    header: dict[str, Any] = {"inputs": described}
    if request_id is not None:
        header["id"] = request_id
    if outputs:
        header["outputs"] = [{"name": name, "parameters": {"binary_data": True}} for name in outputs]
    else:
        header["parameters"] = {"binary_data_output": True}
    return _framed(header, blobs)


def encode_response(
    model_name: str,
    outputs: Mapping[str, NDArray[Any]],
    *,
    request_id: str | None = None,
    binary: bool = True,
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of an inference response; ``binary=False`` writes the data into the JSON."""
    header: dict[str, Any] = {"model_name": model_name}
    if request_id is not None:
        header["id"] = request_id
    if binary:
        header["outputs"], blobs = _describe(outputs, key="outputs")
        return _framed(header, blobs)
    header["outputs"] = [_json_tensor(name, array) for name, array in outputs.items()]
    return json.dumps(header).encode(), {"Content-Type": JSON_CONTENT_TYPE}


def encode_error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def _describe(tensors: Mapping[str, NDArray[Any]], *, key: str) -> tuple[list[dict[str, Any]], list[bytes]]:
    described: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array in tensors.items():
        datatype = _datatype_of(name, array)
        blob = (
            _bytes_blob(array)
            if datatype == "BYTES"
            else np.ascontiguousarray(array).astype(DATATYPES[datatype], copy=False).tobytes()
        )
        described.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    if len(described) > MAX_TENSORS:
        raise OipError(f"{len(described)} {key} are more than the {MAX_TENSORS} one message may carry")
    return described, blobs


def _framed(header: dict[str, Any], blobs: list[bytes]) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    headers = {HEADER_LENGTH: str(len(head)), "Content-Type": BINARY_CONTENT_TYPE}
    return b"".join([head, *blobs]), headers


def _datatype_of(name: str, array: NDArray[Any]) -> str:
    if array.dtype == object or array.dtype.kind in "SU":
        return "BYTES"
    datatype = _NAME_OF_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if datatype is None:
        raise OipError(f"tensor {name!r} has dtype {array.dtype}, which the protocol has no datatype for")
    return datatype


def _bytes_blob(array: NDArray[Any]) -> bytes:
    parts: list[bytes] = []
    for element in array.reshape(-1):
        raw = element.encode() if isinstance(element, str) else bytes(element)
        parts.append(len(raw).to_bytes(4, "little"))
        parts.append(raw)
    return b"".join(parts)


def _json_tensor(name: str, array: NDArray[Any]) -> dict[str, Any]:
    datatype = _datatype_of(name, array)
    flat = array.reshape(-1)
    data: list[Any]
    if datatype == "BYTES":
        data = [
            (element if isinstance(element, str) else bytes(element).decode("utf-8", "replace"))
            for element in flat
        ]
    else:
        data = flat.tolist()
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


# -- decoding ------------------------------------------------------------------------------------------


def decode_request(body: bytes, header_length: str | None) -> InferRequest:
    """An inference request from its body and ``Inference-Header-Content-Length`` (None: JSON only)."""
    header, binary = _split(body, header_length)
    tensors = _tensors(header, binary, key="inputs")
    if not tensors:
        raise OipError("the request has no inputs")
    outputs_field = header.get("outputs", [])
    if not isinstance(outputs_field, list) or len(outputs_field) > MAX_TENSORS:
        raise OipError(f"'outputs' must be a list of at most {MAX_TENSORS} objects")
    wanted: list[str] = []
    binary_outputs = bool(_parameters(header, "request").get("binary_data_output", False))
    for entry in outputs_field:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise OipError("every requested output must be an object with a 'name'")
        wanted.append(entry["name"])
        binary_outputs = binary_outputs or bool(_parameters(entry, "output").get("binary_data", False))
    request_id = header.get("id")
    return InferRequest(
        inputs=tensors,
        id=request_id if isinstance(request_id, str) else None,
        outputs=wanted,
        binary_outputs=binary_outputs,
        parameters=_parameters(header, "request"),
    )


def decode_response(body: bytes, header_length: str | None) -> InferResponse:
    """An inference response; a body holding ``{"error": ...}`` raises ``OipError`` with that message."""
    header, binary = _split(body, header_length)
    if "error" in header:
        raise OipError(f"the server answered with an error: {header['error']}")
    model_name = header.get("model_name")
    if not isinstance(model_name, str):
        raise OipError("the response has no 'model_name'")
    request_id, version = header.get("id"), header.get("model_version")
    return InferResponse(
        model_name=model_name,
        outputs=_tensors(header, binary, key="outputs"),
        id=request_id if isinstance(request_id, str) else None,
        model_version=version if isinstance(version, str) else None,
    )


def _split(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    view = memoryview(body)
    if header_length is None:
        length = len(body)
    else:
        try:
            length = int(header_length.strip())
        except ValueError:
            raise OipError(f"{HEADER_LENGTH} must be a whole number, got {header_length[:40]!r}") from None
        if length < 0 or length > len(body):
            raise OipError(f"{HEADER_LENGTH} is {length}, but the body holds {len(body)} bytes")
    if length > MAX_HEADER_BYTES:
        raise OipError(f"the JSON header is {length} bytes, more than the {MAX_HEADER_BYTES} accepted")
    try:
        header = json.loads(bytes(view[:length]))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise OipError(f"the JSON header is not valid JSON: {error}") from None
    if not isinstance(header, dict):
        raise OipError("the JSON header must be an object")
    return header, view[length:]


def _parameters(entry: Mapping[str, Any], what: str) -> dict[str, Any]:
    parameters = entry.get("parameters", {})
    if not isinstance(parameters, dict):
        raise OipError(f"the {what}'s 'parameters' must be an object")
    return parameters


def _tensors(header: Mapping[str, Any], binary: memoryview, *, key: str) -> Tensors:
    entries = header.get(key, [])
    if not isinstance(entries, list):
        raise OipError(f"{key!r} must be a list")
    if len(entries) > MAX_TENSORS:
        raise OipError(f"{len(entries)} {key} are more than the {MAX_TENSORS} one message may carry")
    tensors: Tensors = {}
    offset = 0
    for entry in entries:
        if not isinstance(entry, dict):
            raise OipError(f"every entry of {key!r} must be an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise OipError(f"an entry of {key!r} has no name")
        if name in tensors:
            raise OipError(f"tensor {name!r} appears twice")
        datatype, shape = _datatype_and_shape(name, entry)
        size = _parameters(entry, f"tensor {name!r}").get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise OipError(f"tensor {name!r}: binary_data_size must be a non-negative whole number")
            if offset + size > len(binary):
                left = len(binary) - offset
                raise OipError(f"tensor {name!r} needs {size} bytes of binary data, but only {left} follow")
            tensors[name] = _from_binary(name, datatype, shape, binary[offset : offset + size])
            offset += size
        elif "data" in entry:
            tensors[name] = _from_json(name, datatype, shape, entry["data"])
        else:
            raise OipError(f"tensor {name!r} has neither 'data' nor binary_data_size")
    if offset != len(binary):
        raise OipError(f"{len(binary) - offset} bytes of binary data follow the tensors the header describes")
    return tensors


def _datatype_and_shape(name: str, entry: Mapping[str, Any]) -> tuple[str, tuple[int, ...]]:
    datatype = entry.get("datatype")
    if datatype not in DATATYPES:
        known = ", ".join(DATATYPES)
        raise OipError(f"tensor {name!r} has datatype {str(datatype)[:20]!r}; known datatypes: {known}")
    shape = entry.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_RANK
        or not all(isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape)
    ):
        raise OipError(
            f"tensor {name!r}: shape must be a list of at most {MAX_RANK} non-negative whole numbers"
        )
    return str(datatype), tuple(shape)


def _from_binary(name: str, datatype: str, shape: tuple[int, ...], blob: memoryview) -> NDArray[Any]:
    count = math.prod(shape)
    if datatype == "BYTES":
        return _bytes_elements(name, shape, count, blob)
    dtype = DATATYPES[datatype]
    expected = count * dtype.itemsize
    if len(blob) != expected:
        raise OipError(
            f"tensor {name!r} of shape {list(shape)} and datatype {datatype} is {expected} bytes, "
            f"but binary_data_size says {len(blob)}"
        )
    return np.frombuffer(blob, dtype=dtype).reshape(shape)


def _bytes_elements(name: str, shape: tuple[int, ...], count: int, blob: memoryview) -> NDArray[Any]:
    # Each element costs at least its 4-byte length: a shape promising more elements than that is a lie.
    if count * 4 > len(blob):
        raise OipError(f"tensor {name!r} of shape {list(shape)} cannot fit in {len(blob)} bytes")
    elements: list[bytes] = []
    position = 0
    for _ in range(count):
        if position + 4 > len(blob):
            raise OipError(f"tensor {name!r}: BYTES data ends inside an element's length")
        length = int.from_bytes(blob[position : position + 4], "little")
        position += 4
        if position + length > len(blob):
            raise OipError(f"tensor {name!r}: a BYTES element of {length} bytes runs past the data")
        elements.append(bytes(blob[position : position + length]))
        position += length
    if position != len(blob):
        raise OipError(f"tensor {name!r}: {len(blob) - position} bytes follow its last BYTES element")
    array = np.empty(count, dtype=object)
    array[:] = elements
    return array.reshape(shape)


def _from_json(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> NDArray[Any]:
    count = math.prod(shape)
    flat = _flatten(name, data, limit=count)
    if len(flat) != count:
        raise OipError(f"tensor {name!r} of shape {list(shape)} needs {count} values, got {len(flat)}")
    if datatype == "BYTES":
        if not all(isinstance(value, str) for value in flat):
            raise OipError(f"tensor {name!r}: BYTES data in JSON must be strings")
        array = np.empty(count, dtype=object)
        array[:] = [value.encode() for value in flat]
        return array.reshape(shape)
    if not all(isinstance(value, (int, float)) for value in flat):
        raise OipError(f"tensor {name!r}: {datatype} data must be numbers")
    try:
        return np.asarray(flat, dtype=DATATYPES[datatype]).reshape(shape)
    except (OverflowError, ValueError) as error:
        raise OipError(f"tensor {name!r}: its values do not fit {datatype} ({error})") from None


def _flatten(name: str, data: Any, *, limit: int) -> list[Any]:
    """Row-major values of ``data`` (a flat or nested list); stops early once past ``limit``."""
    if not isinstance(data, list):
        raise OipError(f"tensor {name!r}: 'data' must be a list")
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                if len(stack) > MAX_RANK:
                    raise OipError(f"tensor {name!r}: 'data' is nested deeper than {MAX_RANK} levels")
                stack.append(iter(value))
                break
            flat.append(value)
            if len(flat) > limit:
                return flat
        else:
            stack.pop()
    return flat
