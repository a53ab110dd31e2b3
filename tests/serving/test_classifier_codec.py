"""A custom classifier's two halves agree: the gateway's pixels are those the in-process runner would
prepare, the service reads them and the registration's digest back, and the scores return equal; what
does not fit the registration is refused with the tensor's name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.classifier import ClassScores, KerasClassifierRunner, prepare_pixels
from inference.serving.classifier_codec import (
    DIGEST_TENSOR,
    ClassifierCodec,
    ClassifierSpec,
    asked_digest,
    is_classifier_model,
)
from inference.serving.oip import OipError, decode_request, decode_response, encode_request, encode_response
from inference.serving.tensors import Tensors, bytes_tensor

SPEC = ClassifierSpec(
    model="classifier-7",
    sha256="ab" * 32,
    input_size=(48, 64),
    classes=("dots", "stripes", "zigzags"),
    positive_class="stripes",
)


def _over_the_wire(tensors: Tensors) -> Tensors:
    body, headers = encode_request(tensors)
    return decode_request(body, headers["Inference-Header-Content-Length"]).inputs


def _back(outputs: Tensors) -> Tensors:
    body, headers = encode_response(SPEC.model, outputs)
    return decode_response(body, headers["Inference-Header-Content-Length"]).outputs


def _frames() -> list[Image.Image | np.ndarray]:
    rng = np.random.default_rng(4)
    return [
        Image.fromarray(rng.integers(0, 256, size=(90, 120, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, size=(30, 20), dtype=np.uint8)).convert("L"),
        rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8),
    ]


def test_frames_travel_as_the_pixels_the_in_process_runner_prepares() -> None:
    codec = ClassifierCodec(SPEC)
    assert codec.name == "classifier-7"
    inputs = _over_the_wire(codec.encode_items(_frames()))
    assert asked_digest(inputs) == SPEC.sha256
    items = codec.split_items(inputs)
    assert [item.shape for item in items] == [(48, 64, 3)] * 3
    for item, frame in zip(items, _frames(), strict=True):
        assert np.array_equal(item, prepare_pixels(frame, SPEC.input_size))


def test_scores_come_back_equal_in_the_registrations_class_order() -> None:
    codec = ClassifierCodec(SPEC)
    values = np.array([[0.125, 0.75, 0.125], [0.9, 0.0625, 0.0375]], dtype=np.float32)
    results = [
        ClassScores({name: float(v) for name, v in zip(SPEC.classes, row, strict=True)}, "stripes")
        for row in values
    ]
    outputs = _back(codec.encode_results(results))
    assert outputs["PROBABILITIES"].dtype == np.float32 and outputs["PROBABILITIES"].shape == (2, 3)
    back = codec.decode_results(outputs, 2)
    assert back == results
    assert [result.positive for result in back] == [0.75, 0.0625]


def test_the_service_half_scores_what_the_in_process_runner_scores(pattern_classifier: Path) -> None:
    runner = KerasClassifierRunner(pattern_classifier, "cpu", max_batch=2)
    runner.load()
    try:
        metadata = runner.metadata
        spec = ClassifierSpec(
            "classifier-1", "cd" * 32, metadata.input_size, metadata.classes, metadata.positive_class
        )
        codec = ClassifierCodec(spec)
        frames = _frames()
        served = codec.run(runner, codec.split_items(_over_the_wire(codec.encode_items(frames))))
        here = runner.predict_batch(frames)
    finally:
        runner.close()
    assert len(served) == 3  # in chunks of max_batch, as the runner's own batches
    for there, local in zip(served, here, strict=True):
        assert there.positive_class == local.positive_class == "stripes"
        for name, score in local.scores.items():
            assert there.scores[name] == pytest.approx(score, abs=1e-6)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"PIXELS": np.zeros((1, 64, 48, 3), np.uint8)}, r"takes 48x64 RGB pixels"),
        ({"PIXELS": np.zeros((1, 48, 64, 3), np.float32)}, "must be uint8"),
        ({"PIXELS": np.zeros((1, 48, 64), np.uint8)}, "must have 4 dimensions"),
    ],
)
def test_the_service_refuses_pixels_that_are_not_the_registrations(inputs: Tensors, message: str) -> None:
    with pytest.raises(OipError, match=message):
        ClassifierCodec(SPEC).split_items(inputs)


@pytest.mark.parametrize(
    ("digest", "message"),
    [
        (None, f"{DIGEST_TENSOR!r} is missing"),
        ([b"ab" * 32, b"cd" * 32], "2 rows for 1 items"),
        ([b"AB" * 32], "one SHA-256 digest in lowercase hex"),
        ([b"\xff" * 64], "one SHA-256 digest in lowercase hex"),
    ],
)
def test_a_request_must_name_one_registration_digest(digest: list[bytes] | None, message: str) -> None:
    inputs: Tensors = {"PIXELS": np.zeros((1, 48, 64, 3), np.uint8)}
    if digest is not None:
        inputs[DIGEST_TENSOR] = bytes_tensor(digest)
    with pytest.raises(OipError, match=message):
        asked_digest(inputs)


def test_a_registration_recorded_without_a_digest_travels_without_one() -> None:
    codec = ClassifierCodec(ClassifierSpec("classifier-2", "", (48, 64), ("a", "b"), "b"))
    assert asked_digest(_over_the_wire(codec.encode_items(_frames()[:1]))) == ""


def test_the_gateway_refuses_scores_that_do_not_fit_the_registration() -> None:
    codec = ClassifierCodec(SPEC)
    with pytest.raises(OipError, match="2 rows for 3 items"):
        codec.decode_results({"PROBABILITIES": np.zeros((2, 3), np.float32)}, 3)
    with pytest.raises(OipError, match="must have 3 columns"):
        codec.decode_results({"PROBABILITIES": np.zeros((2, 2), np.float32)}, 2)
    with pytest.raises(OipError, match="must be float32"):
        codec.decode_results({"PROBABILITIES": np.zeros((2, 3), np.float64)}, 2)


def test_classifier_model_names() -> None:
    assert is_classifier_model("classifier-1") and is_classifier_model("classifier-1024")
    for name in ("classifier-0", "classifier-01", "classifier-x", "classifier-", "nudenet", "classifier-٣"):
        assert not is_classifier_model(name), name
