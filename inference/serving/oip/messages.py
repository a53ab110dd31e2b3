"""Inference request and response bodies: a JSON header, then the tensors' binary data.

``Inference-Header-Content-Length`` gives the JSON part's length; without it the body is JSON only.
A response that is ``{"error": ...}`` is read back as an ``OipError`` carrying the server's message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from numpy.typing import NDArray

from inference.serving.oip.protocol import (
    BINARY_CONTENT_TYPE,
    HEADER_LENGTH,
    JSON_CONTENT_TYPE,
    MAX_HEADER_BYTES,
    MAX_TENSORS,
    InferRequest,
    InferResponse,
    OipError,
    parameters_of,
)
from inference.serving.oip.tensor_data import binary_tensors, json_tensor, read_tensors

__all__ = ["decode_request", "decode_response", "encode_error", "encode_request", "encode_response"]


def encode_request(
    inputs: Mapping[str, NDArray[Any]],
    *,
    outputs: Sequence[str] = (),
    request_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of an inference request with every input as binary data; ``outputs`` are asked
    for as binary data too (none named: the server sends all of them)."""
    described, blobs = binary_tensors(inputs, key="inputs")
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
        header["outputs"], blobs = binary_tensors(outputs, key="outputs")
        return _framed(header, blobs)
    header["outputs"] = [json_tensor(name, array) for name, array in outputs.items()]
    return json.dumps(header).encode(), {"Content-Type": JSON_CONTENT_TYPE}


def encode_error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def _framed(header: dict[str, Any], blobs: list[bytes]) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    headers = {HEADER_LENGTH: str(len(head)), "Content-Type": BINARY_CONTENT_TYPE}
    return b"".join([head, *blobs]), headers


def decode_request(body: bytes, header_length: str | None) -> InferRequest:
    """An inference request from its body and ``Inference-Header-Content-Length`` (None: JSON only)."""
    header, binary = _split(body, header_length)
    tensors = read_tensors(header, binary, key="inputs")
    if not tensors:
        raise OipError("the request has no inputs")
    outputs_field = header.get("outputs", [])
    if not isinstance(outputs_field, list) or len(outputs_field) > MAX_TENSORS:
        raise OipError(f"'outputs' must be a list of at most {MAX_TENSORS} objects")
    wanted: list[str] = []
    binary_outputs = bool(parameters_of(header, "request").get("binary_data_output", False))
    for entry in outputs_field:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise OipError("every requested output must be an object with a 'name'")
        wanted.append(entry["name"])
        binary_outputs = binary_outputs or bool(parameters_of(entry, "output").get("binary_data", False))
    request_id = header.get("id")
    return InferRequest(
        inputs=tensors,
        id=request_id if isinstance(request_id, str) else None,
        outputs=wanted,
        binary_outputs=binary_outputs,
        parameters=parameters_of(header, "request"),
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
        outputs=read_tensors(header, binary, key="outputs"),
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
