from __future__ import annotations

import json

import numpy as np
import pytest

from inference.serving.oip import (
    HEADER_LENGTH,
    MAX_HEADER_BYTES,
    OipError,
    decode_request,
    decode_response,
    encode_error,
    encode_request,
    encode_response,
)


def _bytes_tensor(*values: bytes) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def _framed(header: dict[str, object], binary: bytes = b"") -> tuple[bytes, str]:
    head = json.dumps(header).encode()
    return head + binary, str(len(head))


def test_a_request_round_trips_every_datatype_lumi_sends() -> None:
    rng = np.random.default_rng(0)
    inputs = {
        "IMAGES": rng.integers(0, 256, size=(2, 5, 7, 3), dtype=np.uint8),
        "SCORES": rng.random((2, 3), dtype=np.float32),
        "SIZES": np.array([[5, 7], [4, 6]], dtype=np.int64),
        "LABELS": _bytes_tensor("기쁨".encode(), b"", b"\x00\xff"),
    }
    body, headers = encode_request(inputs, outputs=["DETECTIONS"], request_id="r1")
    assert headers["Content-Type"] == "application/octet-stream"
    request = decode_request(body, headers[HEADER_LENGTH])
    assert request.id == "r1" and request.outputs == ["DETECTIONS"] and request.binary_outputs
    assert set(request.inputs) == set(inputs)
    for name, array in inputs.items():
        assert request.inputs[name].shape == array.shape
        assert request.inputs[name].dtype == array.dtype
        assert np.array_equal(request.inputs[name], array)


def test_a_response_round_trips_in_binary_and_in_json() -> None:
    outputs = {"PROBABILITY": np.array([0.25, 0.75], dtype=np.float32), "COUNTS": np.array([1, 0])}
    for binary in (True, False):
        body, headers = encode_response("open_nsfw", outputs, request_id="x", binary=binary)
        response = decode_response(body, headers.get(HEADER_LENGTH))
        assert response.model_name == "open_nsfw" and response.id == "x"
        assert np.array_equal(response.outputs["PROBABILITY"], outputs["PROBABILITY"])
        assert response.outputs["PROBABILITY"].dtype == np.float32
        assert response.outputs["COUNTS"].tolist() == [1, 0]


def test_json_data_may_be_nested_or_flat() -> None:
    header = {
        "inputs": [
            {"name": "A", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2], [3, 4]]},
            {"name": "B", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4.5]},
            {"name": "C", "shape": [1], "datatype": "BYTES", "data": ["hi"]},
        ]
    }
    request = decode_request(json.dumps(header).encode(), None)
    assert request.inputs["A"].tolist() == [[1, 2], [3, 4]]
    assert request.inputs["B"].dtype == np.float32 and request.inputs["B"][1, 1] == 4.5
    assert request.inputs["C"].tolist() == [b"hi"]


def test_an_error_body_raises_with_the_servers_message() -> None:
    with pytest.raises(OipError, match="model 'x' is not served"):
        decode_response(encode_error("model 'x' is not served"), None)


@pytest.mark.parametrize(
    ("header", "binary", "message"),
    [
        # Binary sizes that disagree with the shape, or with what follows the header.
        (
            {
                "inputs": [
                    {"name": "A", "shape": [2, 2], "datatype": "UINT8", "parameters": {"binary_data_size": 3}}
                ]
            },
            b"abc",
            "is 4 bytes, but binary_data_size says 3",
        ),
        (
            {
                "inputs": [
                    {"name": "A", "shape": [4], "datatype": "UINT8", "parameters": {"binary_data_size": 4}}
                ]
            },
            b"ab",
            "needs 4 bytes of binary data, but only 2 follow",
        ),
        (
            {
                "inputs": [
                    {"name": "A", "shape": [2], "datatype": "UINT8", "parameters": {"binary_data_size": 2}}
                ]
            },
            b"abcd",
            "2 bytes of binary data follow",
        ),
        (
            {
                "inputs": [
                    {"name": "A", "shape": [1], "datatype": "UINT8", "parameters": {"binary_data_size": -1}}
                ]
            },
            b"",
            "non-negative",
        ),
        # Unknown datatypes and impossible shapes.
        ({"inputs": [{"name": "A", "shape": [1], "datatype": "FP128", "data": [1]}]}, b"", "known datatypes"),
        ({"inputs": [{"name": "A", "shape": [-1], "datatype": "FP32", "data": [1]}]}, b"", "shape must be"),
        ({"inputs": [{"name": "A", "shape": "2x2", "datatype": "FP32", "data": [1]}]}, b"", "shape must be"),
        (
            {"inputs": [{"name": "A", "shape": [1] * 9, "datatype": "FP32", "data": [1]}]},
            b"",
            "shape must be",
        ),
        # JSON data whose count disagrees with the shape, or of the wrong kind.
        (
            {"inputs": [{"name": "A", "shape": [2, 3], "datatype": "FP32", "data": [1, 2]}]},
            b"",
            "needs 6 values, got 2",
        ),
        (
            {"inputs": [{"name": "A", "shape": [10**12], "datatype": "FP32", "data": [1, 2]}]},
            b"",
            "got 2",
        ),
        (
            {"inputs": [{"name": "A", "shape": [1], "datatype": "INT64", "data": ["x"]}]},
            b"",
            "must be numbers",
        ),
        (
            {"inputs": [{"name": "A", "shape": [1], "datatype": "UINT8", "data": [300]}]},
            b"",
            "do not fit UINT8",
        ),
        # A huge shape with little data is refused before anything is allocated.
        (
            {
                "inputs": [
                    {
                        "name": "A",
                        "shape": [10**9, 10**9],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 8},
                    }
                ]
            },
            b"\x00" * 8,
            "cannot fit in 8 bytes",
        ),
        (
            {
                "inputs": [
                    {"name": "A", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}
                ]
            },
            b"\xff\x00\x00\x00ab",
            "runs past the data",
        ),
        # Structure.
        ({"inputs": []}, b"", "no inputs"),
        ({"inputs": {"A": 1}}, b"", "must be a list"),
        ({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}, b"", "has no name"),
        (
            {"inputs": [{"name": "A", "shape": [1], "datatype": "FP32", "data": [1]}] * 2},
            b"",
            "appears twice",
        ),
        ({"inputs": [{"name": "A", "shape": [1], "datatype": "FP32"}]}, b"", "neither 'data' nor"),
    ],
)
def test_hostile_requests_get_a_clear_error(header: dict[str, object], binary: bytes, message: str) -> None:
    body, length = _framed(header, binary)
    with pytest.raises(OipError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode_request(body, length)


@pytest.mark.parametrize(
    ("length", "message"),
    [("abc", "must be a whole number"), ("-1", "body holds"), ("999999", "body holds")],
)
def test_a_bad_header_length_is_refused(length: str, message: str) -> None:
    body, _ = _framed({"inputs": [{"name": "A", "shape": [1], "datatype": "FP32", "data": [1]}]})
    with pytest.raises(OipError, match=message):
        decode_request(body, length)


def test_a_huge_header_is_refused_without_parsing_it() -> None:
    body = b"{" + b" " * (MAX_HEADER_BYTES + 10) + b"}"
    with pytest.raises(OipError, match="more than the"):
        decode_request(body, str(len(body)))
    with pytest.raises(OipError, match="more than the"):
        decode_request(body, None)


def test_a_header_that_is_not_a_json_object_is_refused() -> None:
    with pytest.raises(OipError, match="not valid JSON"):
        decode_request(b"\xff\xfe not json", None)
    with pytest.raises(OipError, match="must be an object"):
        decode_request(b"[1, 2]", None)


def test_arrays_without_a_protocol_datatype_are_refused_when_encoding() -> None:
    with pytest.raises(OipError, match="no datatype"):
        encode_request({"A": np.array([1 + 2j])})
