"""Tensors to and from their OIP form: binary data (the binary tensor extension) or JSON ``data``.

Binary data is little-endian, row major, without padding; a BYTES element is a 4-byte little-endian
length followed by its bytes. Every length, shape and size a peer sends is checked against the others
and against the caps in ``protocol`` before an array is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from inference.serving.oip.protocol import DATATYPES, MAX_RANK, MAX_TENSORS, OipError, Tensors, parameters_of

__all__ = ["binary_tensors", "json_tensor", "read_tensors"]

_NAME_OF_KIND: Final = {
    (dtype.kind, dtype.itemsize): name for name, dtype in DATATYPES.items() if name != "BYTES"
}


def binary_tensors(
    tensors: Mapping[str, NDArray[Any]], *, key: str
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The header entry of each tensor and the binary data that follows the header, in the same order."""
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


def json_tensor(name: str, array: NDArray[Any]) -> dict[str, Any]:
    """The header entry of a tensor that carries its values in ``data``."""
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


def read_tensors(header: Mapping[str, Any], binary: memoryview, *, key: str) -> Tensors:
    """The tensors ``header[key]`` describes; together they must use every byte of ``binary``."""
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
        size = parameters_of(entry, f"tensor {name!r}").get("binary_data_size")
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
