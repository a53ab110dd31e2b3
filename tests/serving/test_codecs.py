"""Each model's two halves agree: what a gateway encodes the service reads, and back; bad tensors from
either side are refused with the tensor's name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.config import SettingsError, load_settings
from inference.runners.emotions import FER_EMOTIONS, EmotionScores
from inference.runners.faces import FaceBox
from inference.runners.nudenet import Detection
from inference.runners.objects import ObjectDetection
from inference.serving.codecs import CODECS
from inference.serving.oip import OipError, decode_request, decode_response, encode_request, encode_response
from inference.serving.tensors import Tensors


def _over_the_wire(tensors: Tensors) -> Tensors:
    body, headers = encode_request(tensors)
    return decode_request(body, headers["Inference-Header-Content-Length"]).inputs


def _back(name: str, outputs: Tensors) -> Tensors:
    body, headers = encode_response(name, outputs)
    return decode_response(body, headers["Inference-Header-Content-Length"]).outputs


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [
        Image.fromarray(rng.integers(0, 256, size=(40, 70, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, size=(65, 30), dtype=np.uint8)).convert("L"),
    ]


@pytest.mark.parametrize(
    ("name", "results"),
    [
        ("nudenet", [[Detection("FACE_FEMALE", 0.8125, (1, 2, 30, 40))], []]),
        ("open_nsfw", [0.25, 0.5]),
        ("faces", [[], [FaceBox(3, 4, 20, 22, 0.987654321), FaceBox(0, 0, 24, 24, 1.5)]]),
        ("objects", [[ObjectDetection(7, "Coffee cup", 0.61, (5, 6, 7, 8))], []]),
    ],
)
def test_images_travel_prepared_and_results_come_back_equal(name: str, results: list[object]) -> None:
    codec = CODECS[name]
    items = codec.split_items(_over_the_wire(codec.encode_items(_images())))
    assert len(items) == 2
    assert codec.decode_results(_back(name, codec.encode_results(results)), 2) == results


def test_padded_images_are_cut_back_to_their_own_size() -> None:
    images = _images()
    items = CODECS["faces"].split_items(_over_the_wire(CODECS["faces"].encode_items(images)))
    assert [item.shape for item in items] == [(40, 70, 3), (65, 30, 3)]
    assert np.array_equal(items[0], np.asarray(images[0]))
    assert np.array_equal(items[1], np.asarray(images[1].convert("RGB")))


def test_emotion_crops_and_comment_labels_round_trip() -> None:
    crops = [np.full((64, 64), value, dtype=np.uint8) for value in (10, 200)]
    codec = CODECS["emotions"]
    items = codec.split_items(_over_the_wire(codec.encode_items(crops)))
    assert [int(item[0, 0]) for item in items] == [10, 200]
    scores = [EmotionScores({name: 1.0 / 7 for name in FER_EMOTIONS})] * 2
    assert codec.decode_results(_back("emotions", codec.encode_results(scores)), 2) == scores

    commenter = CODECS["commenter"]
    labels = [("기쁨", "커피"), ()]
    assert commenter.split_items(_over_the_wire(commenter.encode_items(labels))) == labels
    comments = ["오늘 커피 최고 ☕", ""]
    assert commenter.decode_results(_back("commenter", commenter.encode_results(comments)), 2) == comments


@pytest.mark.parametrize(
    ("name", "inputs", "message"),
    [
        ("nudenet", {"PIXELS": np.zeros((1, 320, 320, 3), np.float32)}, "must be uint8"),
        ("nudenet", {"PIXELS": np.zeros((1, 320, 320, 3), np.uint8)}, "'SIZES' is missing"),
        (
            "nudenet",
            {"PIXELS": np.zeros((2, 320, 320, 3), np.uint8), "SIZES": np.ones((1, 2), np.int64)},
            "1 rows for 2 items",
        ),
        (
            "nudenet",
            {"PIXELS": np.zeros((1, 320, 320, 3), np.uint8), "SIZES": np.zeros((1, 2), np.int64)},
            "under 1",
        ),
        ("open_nsfw", {"CROPS": np.zeros((1, 256, 256, 3), np.uint8)}, "224x224"),
        ("emotions", {"CROPS": np.zeros((1, 48, 48), np.uint8)}, "64x64"),
        (
            "faces",
            {"IMAGES": np.zeros((1, 10, 10, 3), np.uint8), "SIZES": np.array([[11, 10]], np.int64)},
            "does not fit",
        ),
        ("faces", {"IMAGES": np.zeros((1, 10, 10, 4), np.uint8), "SIZES": np.ones((1, 2), np.int64)}, "RGB"),
        ("commenter", {"LABELS": np.array([b"{not json"], dtype=object)}, "JSON array of strings"),
    ],
)
def test_the_service_refuses_tensors_its_model_cannot_take(name: str, inputs: Tensors, message: str) -> None:
    with pytest.raises(OipError, match=message):
        CODECS[name].split_items(inputs)


def test_the_gateway_refuses_results_that_do_not_add_up() -> None:
    codec = CODECS["nudenet"]
    outputs = codec.encode_results([[Detection("FACE_MALE", 0.5, (0, 0, 1, 1))], []])
    with pytest.raises(OipError, match="3 items"):
        codec.decode_results(outputs, 3)
    outputs["COUNTS"] = np.array([2, 0], dtype=np.int64)
    with pytest.raises(OipError, match="must have 2 rows"):
        codec.decode_results(outputs, 2)
    outputs["COUNTS"] = np.array([1, 0], dtype=np.int64)
    outputs["CLASSES"] = np.array([99], dtype=np.int64)
    with pytest.raises(OipError, match="class NudeNet does not have"):
        codec.decode_results(outputs, 2)
    with pytest.raises(OipError, match="2 rows for 3 items"):
        CODECS["open_nsfw"].decode_results({"PROBABILITY": np.zeros(2, np.float32)}, 3)


def test_inference_url_must_be_an_http_url(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="INFERENCE_URL"):
        load_settings(_env_file=None, data_dir=tmp_path, inference_url="ftp://models:8000")
    settings = load_settings(_env_file=None, data_dir=tmp_path, inference_url="http://models:8000/")
    assert settings.inference_url == "http://models:8000"
    assert load_settings(_env_file=None, data_dir=tmp_path).remote_models() is None
