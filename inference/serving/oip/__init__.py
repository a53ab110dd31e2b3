"""The Open Inference Protocol (KServe v2 REST, the protocol Triton speaks) with binary tensor data.

A request or response body is a JSON object, optionally followed by the raw bytes of its tensors; the
``Inference-Header-Content-Length`` header then gives the JSON part's length. Tensor bytes are
little-endian, row major, without padding; a BYTES element is a 4-byte little-endian length followed by
its bytes. Lumi sends every tensor as binary data (images are large, and JSON numbers lose nothing
only slowly) and reads both forms, so any OIP client or server can talk to it.

Everything read here comes from the network: lengths, shapes and sizes are checked against each other
and against caps before anything is allocated, and every refusal is an ``OipError`` whose message says
what was wrong, which the server returns as ``{"error": ...}`` with status 400.

The package is used through this face: ``protocol`` holds the vocabulary (header names, datatypes,
caps, message types), ``messages`` the request and response bodies, ``tensor_data`` each tensor's
binary or JSON form.
"""

from __future__ import annotations

from inference.serving.oip.messages import (
    decode_request,
    decode_response,
    encode_error,
    encode_request,
    encode_response,
)
from inference.serving.oip.protocol import (
    BINARY_CONTENT_TYPE,
    DATATYPES,
    HEADER_LENGTH,
    JSON_CONTENT_TYPE,
    MAX_HEADER_BYTES,
    MAX_RANK,
    MAX_TENSORS,
    InferRequest,
    InferResponse,
    OipError,
    Tensors,
)

__all__ = [
    "BINARY_CONTENT_TYPE",
    "DATATYPES",
    "HEADER_LENGTH",
    "JSON_CONTENT_TYPE",
    "MAX_HEADER_BYTES",
    "MAX_RANK",
    "MAX_TENSORS",
    "InferRequest",
    "InferResponse",
    "OipError",
    "Tensors",
    "decode_request",
    "decode_response",
    "encode_error",
    "encode_request",
    "encode_response",
]
