"""Faces, emotions and labels on real photos that ship inside installed packages."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from PIL import Image

from inference.labels import EMOTION_LABELS, Label, oiv7_vocabulary, select_labels
from inference.perception import (
    Perceiver,
    Perception,
    PerceptionConfig,
    emotion_for,
    merge_labels,
    register_perception_models,
)
from inference.registry import ModelRegistry
from inference.runners.base import ModelUnavailable
from inference.runners.emotions import CROP_SIZE, FER_EMOTIONS, EmotionRunner, EmotionScores, face_crop
from inference.runners.faces import FaceRunner
from inference.runners.objects import ObjectDetection

NO_PEOPLE = ("coffee", "chelsea", "rocket")


def scores(**values: float) -> EmotionScores:
    rest = (1.0 - sum(values.values())) / (len(FER_EMOTIONS) - len(values))
    return EmotionScores({name: values.get(name, rest) for name in FER_EMOTIONS})


def photos(package_photos: dict[str, Image.Image], *names: str) -> list[Image.Image]:
    missing = [name for name in names if name not in package_photos]
    if missing:
        pytest.skip(f"package photos not installed: {missing}")
    return [package_photos[name] for name in names]


# -- emotions → labels ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("emotion", "label"), [("happy", "기쁨"), ("sad", "슬픔"), ("angry", "분노"), ("fear", "공포")]
)
def test_the_four_emotions_map_to_the_training_vocabulary(emotion: str, label: str) -> None:
    found = emotion_for(scores(**{emotion: 0.7}), min_score=0.4)
    assert found is not None and (found.ko, found.kind) == (label, "emotion")
    assert found.score == pytest.approx(0.7)


@pytest.mark.parametrize("emotion", ["neutral", "surprise", "disgust"])
def test_neutral_surprise_and_disgust_add_no_label(emotion: str) -> None:
    # Even when a mapped emotion comes second with a fair score, the face's strongest feeling decides.
    assert emotion_for(scores(**{emotion: 0.5, "happy": 0.3}), min_score=0.2) is None


def test_a_weak_emotion_adds_no_label() -> None:
    assert emotion_for(scores(happy=0.35), min_score=0.4) is None
    assert emotion_for(scores(happy=0.45), min_score=0.4) is not None


def test_labels_are_ranked_deduplicated_and_capped() -> None:
    happy = EMOTION_LABELS["happy"]
    jacket = oiv7_vocabulary().by_name("Jacket")
    tree = oiv7_vocabulary().by_name("Tree")
    assert jacket is not None and tree is not None
    candidates = [
        Label(happy.ko, happy.en, "emotion", 0.6),
        jacket.label(0.9),
        Label(happy.ko, happy.en, "emotion", 0.8),
        tree.label(0.5),
    ]
    assert [(label.ko, label.score) for label in select_labels(candidates, 2)] == [
        ("재킷", 0.9),
        ("기쁨", 0.8),
    ]
    one = Perception(faces=[], objects=[], labels=[tree.label(0.5)])
    two = Perception(faces=[], objects=[], labels=[jacket.label(0.7), tree.label(0.6)])
    assert [label.ko for label in merge_labels([one, two], 5)] == ["재킷", "나무"]


def test_objects_become_labels_only_when_known_specific_and_confident() -> None:
    perceiver = Perceiver(ModelRegistry("cpu"), PerceptionConfig(object_min_score=0.35))

    def seen(name: str, score: float) -> str | None:
        label = perceiver._seen(ObjectDetection(0, name, score, (0, 0, 10, 10))).label
        return label.ko if label else None

    assert seen("Jacket", 0.8) == "재킷"
    assert seen("Jacket", 0.2) is None
    assert seen("Person", 0.95) is None  # generic: the face speaks for the person
    assert seen("Human face", 0.95) is None
    assert seen("Not a class", 0.95) is None


def test_face_crop_is_64_pixels_and_survives_boxes_at_the_border() -> None:
    gray = np.arange(100 * 80, dtype=np.uint32).reshape(80, 100).astype(np.uint8)
    for box in [(10, 10, 30, 40), (-5, -5, 20, 20), (90, 70, 30, 30)]:
        crop = face_crop(gray, box)
        assert crop.shape == (CROP_SIZE, CROP_SIZE) and crop.dtype == np.uint8


# -- the models on real photos ----------------------------------------------------------------------


def test_faces_on_package_photos(face_runner: FaceRunner, package_photos: dict[str, Image.Image]) -> None:
    names = ("astronaut", "zidane", *NO_PEOPLE)
    found = face_runner.predict_batch(photos(package_photos, *names))
    counts = {name: len(faces) for name, faces in zip(names, found, strict=True)}
    assert counts == {"astronaut": 1, "zidane": 2, "coffee": 0, "chelsea": 0, "rocket": 0}
    (face,) = found[0]
    # The astronaut's face is in the upper middle of the 512x512 portrait.
    assert 150 < face.x + face.width / 2 < 300 and 60 < face.y + face.height / 2 < 200


@pytest.mark.parametrize("detector", ["mtcnn", "haar"])
def test_images_too_small_for_a_face_get_none_and_spare_their_batch(
    detector: str, package_photos: dict[str, Image.Image]
) -> None:
    runner = FaceRunner("cpu", detector="mtcnn" if detector == "mtcnn" else "haar")
    try:
        runner.load()
    except ModelUnavailable as exc:
        pytest.skip(str(exc))
    (astronaut,) = photos(package_photos, "astronaut")
    # MTCNN's image pyramid is empty under 20 px; two tiny images of one size also form a tensor batch.
    tiny = [Image.new("RGB", size, (128, 128, 128)) for size in [(10, 10), (10, 10), (19, 400), (1, 1)]]
    found = runner.predict_batch([tiny[0], astronaut, *tiny[1:]])
    assert [len(faces) for faces in found] == [0, 1, 0, 0, 0]
    runner.close()


def test_haar_cascade_fallback_finds_frontal_faces_only(package_photos: dict[str, Image.Image]) -> None:
    runner = FaceRunner("cpu", detector="haar")
    runner.load()
    astronaut, zidane, *empty = runner.predict_batch(
        photos(package_photos, "astronaut", "zidane", *NO_PEOPLE)
    )
    assert len(astronaut) == 1
    # Zidane turns his head and shouts: the frontal cascade sees only Ancelotti (MTCNN sees both).
    assert len(zidane) == 1
    assert all(faces == [] for faces in empty)


def test_the_astronaut_looks_happy(
    face_runner: FaceRunner, emotion_runner: EmotionRunner, package_photos: dict[str, Image.Image]
) -> None:
    (image,) = photos(package_photos, "astronaut")
    (face,) = face_runner.predict_batch([image])[0]
    gray = np.asarray(image.convert("L"))
    crop = face_crop(gray, (face.x, face.y, face.width, face.height))
    # One batch: the face twice and a flat grey square; each row is judged on its own.
    happy, again, grey = emotion_runner.predict_batch([crop, crop, np.full_like(crop, 128)])
    assert happy.top[0] == "happy" and happy.top[1] > 0.8
    assert again.scores == pytest.approx(happy.scores, abs=1e-5)
    assert sum(grey.scores.values()) == pytest.approx(1.0, abs=1e-4)
    label = emotion_for(happy, min_score=0.4)
    assert label is not None and label.ko == "기쁨"


async def test_a_tiny_photo_perceived_beside_others_sees_nothing_and_breaks_nothing(
    package_photos: dict[str, Image.Image],
) -> None:
    astronaut, zidane = photos(package_photos, "astronaut", "zidane")
    registry = ModelRegistry("cpu")
    register_perception_models(registry, objects_weights="no-such-weights.pt", objects_download=False)
    perceiver = Perceiver(registry)
    try:
        tiny = Image.new("RGB", (12, 16), (200, 180, 160))
        # At once, so that the three photos share the face model's batches.
        seen = await asyncio.gather(*(perceiver.perceive(image) for image in (astronaut, tiny, zidane)))
        if "faces" in seen[0].missing:
            pytest.skip(f"the face model is unavailable: {perceiver.unavailable}")
        assert [len(perception.faces) for perception in seen] == [1, 0, 2]
        assert seen[1].labels == [] and "faces" not in seen[1].missing
    finally:
        await registry.close()


async def test_perceiver_labels_photos_without_object_weights(package_photos: dict[str, Image.Image]) -> None:
    astronaut, zidane, coffee = photos(package_photos, "astronaut", "zidane", "coffee")
    registry = ModelRegistry("cpu")
    # No YOLO weights here (and no downloads in tests): objects are reported missing, faces still count.
    register_perception_models(registry, objects_weights="no-such-weights.pt", objects_download=False)
    perceiver = Perceiver(registry)
    try:
        first = await perceiver.perceive(astronaut)
        if "faces" in first.missing or "emotions" in first.missing:
            pytest.skip(f"face/emotion models unavailable: {perceiver.unavailable}")
        assert [label.ko for label in first.labels] == ["기쁨"]
        assert len(first.faces) == 1 and first.missing == ["objects"]
        assert "no-such-weights.pt" in perceiver.unavailable["objects"]
        crowd, empty = await perceiver.perceive(zidane), await perceiver.perceive(coffee)
        assert len(crowd.faces) == 2 and all(face.emotions is not None for face in crowd.faces)
        assert empty.faces == [] and empty.labels == []
    finally:
        await registry.close()
