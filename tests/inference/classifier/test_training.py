"""Classifier training: data checks, metrics, the backbones, mixed precision export, the training run.

The whole `lumi train classifier` run (accuracy, output files, reload) is tested in
tests/cli/test_train_classifier.py; here are the parts, small enough to run in seconds.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from inference.classifier.data import (
    DataError,
    balanced_class_weights,
    find_examples,
    load_pixels,
    make_dataset,
    stratified_split,
    validate_examples,
)
from inference.classifier.metadata import MetadataError, parse_metadata, prepare_pixels
from inference.classifier.metrics import choose_threshold, evaluate_probabilities
from inference.classifier.train import train_classifier
from inference.classifier.train_config import TrainConfig, TrainingError, resolve_positive_class
from tests.fakes import images as corpus
from tests.fakes.patterns import write_csv, write_pattern_folders


@pytest.fixture(scope="module")
def keras_tf() -> tuple[Any, Any]:
    from inference.tensorflow_support import import_keras

    return import_keras()


@pytest.fixture
def patterns(tmp_path: Path) -> Path:
    return write_pattern_folders(tmp_path / "data", per_class=12)


# -- data ----------------------------------------------------------------------------------------------


def test_folders_and_csv_find_the_same_images(patterns: Path, tmp_path: Path) -> None:
    from_folders = find_examples(patterns)
    from_csv = find_examples(write_csv(patterns, tmp_path / "labels.csv"))
    assert len(from_folders) == 24
    assert sorted((e.path.resolve(), e.label) for e in from_folders) == sorted(
        (e.path.resolve(), e.label) for e in from_csv
    )
    assert {e.label for e in from_folders} == {"dots", "stripes"}


def test_unreadable_files_are_listed_and_skipped(patterns: Path) -> None:
    (patterns / "dots" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (patterns / "dots" / "notes.jpg").write_bytes(corpus.PLAIN_TEXT)
    (patterns / "dots" / "readme.txt").write_text("not named like an image: ignored, not reported")
    examples, report = validate_examples(find_examples(patterns), min_per_class=10)
    assert len(examples) == 24
    assert sorted(path.name for path, _ in report.skipped) == ["broken.png", "notes.jpg"]
    text = "\n".join(report.lines())
    assert "skipped 2 unreadable file(s)" in text and "notes.jpg: This file is text" in text
    assert report.counts == {"dots": 12, "stripes": 12} and report.imbalance == 1.0


def test_too_few_images_and_imbalance_are_reported(patterns: Path) -> None:
    for path in sorted((patterns / "dots").glob("*.png"))[3:]:
        path.unlink()
    with pytest.raises(DataError, match=r"at least 10 readable images; too few in: dots \(3\)"):
        validate_examples(find_examples(patterns), min_per_class=10)
    _, report = validate_examples(find_examples(patterns), min_per_class=3)
    assert report.imbalance == 4.0
    assert any("unbalanced" in warning for warning in report.warnings)
    weights = balanced_class_weights([0, 0, 0, 1], 2)
    assert weights[1] == pytest.approx(3 * weights[0])


def test_bad_inputs_are_explained(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        find_examples(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        find_examples(tmp_path / "empty")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("path,label\nonly-a-path.png\n")
    with pytest.raises(DataError, match="row 1: expected path,label"):
        find_examples(bad_csv)
    assert resolve_positive_class(["safe", "violence"], None) == "violence"
    with pytest.raises(DataError, match="--positive"):
        resolve_positive_class(["dots", "stripes"], None)


def test_split_keeps_every_class_on_both_sides(patterns: Path) -> None:
    examples = find_examples(patterns)
    train, validation = stratified_split(examples, validation_fraction=0.25, seed=1)
    assert len(train) + len(validation) == 24
    assert sorted(e.label for e in validation) == ["dots"] * 3 + ["stripes"] * 3
    again, _ = stratified_split(examples, validation_fraction=0.25, seed=1)
    assert again == train


def test_pipeline_batches_pixels_and_augmentation_changes_them(patterns: Path, keras_tf: Any) -> None:
    from inference.classifier.data import augmentation

    keras, tf = keras_tf
    examples = find_examples(patterns)[:6]
    plain = make_dataset(
        tf, examples, {"dots": 0, "stripes": 1}, input_size=(32, 32), batch_size=4, training=False
    )
    batches = [(np.asarray(x), np.asarray(y)) for x, y in plain]
    assert [b[0].shape for b in batches] == [(4, 32, 32, 3), (2, 32, 32, 3)]
    assert batches[0][0].dtype == np.float32 and batches[0][0].max() > 1.0  # 0-255, not rescaled
    first = prepare_pixels(Image.open(examples[0].path), (32, 32))
    np.testing.assert_array_equal(batches[0][0][0], first.astype(np.float32))
    augmented = make_dataset(
        tf,
        examples,
        {"dots": 0, "stripes": 1},
        input_size=(32, 32),
        batch_size=6,
        training=True,
        augment=augmentation(keras, seed=1),
        seed=1,
    )
    images, labels = next(iter(augmented))
    assert images.shape == (6, 32, 32, 3) and sorted(np.asarray(labels).tolist()) == sorted(
        [0 if e.label == "dots" else 1 for e in examples]
    )


# -- metrics -------------------------------------------------------------------------------------------


def test_threshold_and_per_class_scores() -> None:
    truth = np.array([True, True, True, False, False, False])
    scores = np.array([0.9, 0.8, 0.4, 0.3, 0.2, 0.1])
    assert choose_threshold(truth, scores) == pytest.approx(0.35)
    probabilities = np.stack([1 - scores, scores], axis=1)
    evaluation = evaluate_probabilities(
        probabilities, [1, 1, 1, 0, 0, 0], ["dots", "stripes"], positive_class="stripes", threshold=0.35
    )
    assert evaluation.accuracy == pytest.approx(5 / 6)
    assert evaluation.confusion == [[3, 0], [1, 2]]
    dots, stripes = evaluation.per_class
    assert (stripes.precision, stripes.recall) == (1.0, pytest.approx(2 / 3))
    assert dots.recall == 1.0 and dots.support == 3
    assert evaluation.at_threshold.f1 == 1.0
    assert "stripes at threshold 0.350: precision 1.000, recall 1.000" in "\n".join(evaluation.lines())


def test_metadata_is_validated() -> None:
    good = {
        "format": "lumi-image-classifier",
        "format_version": 1,
        "classes": ["dots", "stripes"],
        "positive_class": "stripes",
        "input_size": [64, 64],
        "recommended_threshold": 0.5,
    }
    assert parse_metadata(good).positive_index == 1
    for change, message in (
        ({"format": "other"}, "not a Lumi classifier"),
        ({"positive_class": "cats"}, "positive_class"),
        ({"input_size": [8, 8]}, "input_size"),
        ({"recommended_threshold": 1.5}, "recommended_threshold"),
        ({"model_file": "../elsewhere.keras"}, "model_file"),
    ):
        with pytest.raises(MetadataError, match=message):
            parse_metadata({**good, **change})


# -- models --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["vgg16", "mobilenetv3"])
def test_transfer_backbones_build_offline_and_train_one_step(backbone: str, keras_tf: Any) -> None:
    from inference.classifier.networks import build_classifier, compile_classifier, unfreeze_top

    keras, _tf = keras_tf
    built = build_classifier(keras, backbone, n_classes=3, input_size=(32, 32), weights="none")
    compile_classifier(keras, built.model, learning_rate=built.first_learning_rate)
    # Tracing MobileNetV3's training graph takes half a minute on two cores and tests nothing of Lumi's.
    built.model.run_eagerly = True
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    before = [w.copy() for w in built.model.get_weights()]
    loss = built.model.train_on_batch(pixels, np.array([0, 1, 2, 1]))
    assert np.isfinite(np.asarray(loss)).all()
    assert any(not np.array_equal(a, b) for a, b in zip(before, built.model.get_weights(), strict=True))
    outputs = np.asarray(built.model(pixels, training=False))
    assert outputs.shape == (4, 3) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-5)
    assert unfreeze_top(keras, built, layers=4) <= 4
    assert not any(
        layer.trainable
        for layer in built.backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )


def test_mixed_precision_models_are_saved_in_float32(keras_tf: Any) -> None:
    from inference.classifier.networks import build_classifier, dtype_policy, float32_copy

    keras, _tf = keras_tf
    with dtype_policy(keras, mixed=True):
        built = build_classifier(keras, "small", n_classes=2, input_size=(32, 32))
    assert keras.mixed_precision.global_policy().name == "float32"
    assert built.model.layers[1].dtype_policy.name == "mixed_float16"
    copy = float32_copy(keras, built.model)
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(copy(pixels)), np.asarray(built.model(pixels)), atol=2e-3)


def test_imagenet_weights_download_or_a_clear_message(keras_tf: Any) -> None:
    from inference.classifier.networks import WeightsUnavailable, build_classifier

    keras, _tf = keras_tf
    try:
        built = build_classifier(keras, "mobilenetv3", n_classes=2, input_size=(32, 32), weights="imagenet")
    except WeightsUnavailable as error:
        assert "--weights none" in str(error) and "~/.keras/models" in str(error)
    else:  # a machine with internet access, or the weights already in the Keras cache
        assert built.pretrained


def test_training_writes_the_outputs_and_refuses_bad_settings(
    patterns: Path, tmp_path: Path, keras_tf: Any
) -> None:
    with pytest.raises(TrainingError, match="unknown backbone"):
        TrainConfig(data=patterns, out_dir=tmp_path / "x", backbone="resnet")
    out = io.StringIO()
    result = train_classifier(
        TrainConfig(
            data=patterns,
            out_dir=tmp_path / "model",
            image_size=32,
            epochs=1,
            batch_size=8,
            positive_class="stripes",
            min_per_class=5,
            device="cpu",
        ),
        out=out,
    )
    printed = out.getvalue()
    assert "epoch 1/1  step 3/3" in printed and "recommended threshold for stripes" in printed
    assert "accuracy (most probable class)" in printed
    assert sorted(p.name for p in tmp_path.joinpath("model").iterdir()) == [
        "confusion_matrix.png",
        "metadata.json",
        "model.keras",
        "training_curves.png",
    ]
    metadata = json.loads(result.metadata_path.read_text())
    assert metadata["input_size"] == [32, 32] and metadata["training"]["mixed_precision"] is False
    assert len(metadata["history"]["val_loss"]) == 1 and metadata["metrics"]["best_epoch"] == 1
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in result.plots)
    keras, _tf = keras_tf
    reloaded = keras.models.load_model(str(result.model_path), compile=False)
    pixels = np.stack([load_pixels(e.path, (32, 32)) for e in result.validation]).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(reloaded(pixels, training=False)), result.validation_probabilities, atol=1e-6
    )


def test_two_phases_share_history_and_checkpoint(patterns: Path, tmp_path: Path, keras_tf: Any) -> None:
    """The transfer-learning schedule, on a VGG16 without ImageNet weights (none can be downloaded here)."""
    from inference.classifier.fit import PhasedFit
    from inference.classifier.networks import build_classifier, freeze_backbone, unfreeze_top

    keras, tf = keras_tf
    examples = find_examples(patterns)
    index = {"dots": 0, "stripes": 1}
    data = make_dataset(tf, examples, index, input_size=(32, 32), batch_size=8, training=True)
    built = build_classifier(keras, "vgg16", n_classes=2, input_size=(32, 32))
    out = io.StringIO()
    fit = PhasedFit(keras, built, data, data, {0: 1.0, 1: 1.0}, tmp_path / "best.keras", 3, 2, out)
    freeze_backbone(built)
    frozen = [w.copy() for w in built.backbone.get_weights()]
    fit.phase("head", epochs=1, learning_rate=1e-3)
    assert all(np.array_equal(a, b) for a, b in zip(frozen, built.backbone.get_weights(), strict=True))
    assert unfreeze_top(keras, built, layers=2) == 2
    fit.phase("fine-tuning", epochs=1, learning_rate=1e-5)
    assert len(fit.history["loss"]) == len(fit.history["val_loss"]) == 2
    assert fit.best_epoch in (1, 2) and (tmp_path / "best.keras").is_file()
    printed = out.getvalue()
    assert "training: head" in printed and "epoch 2/2  step 3/3" in printed
    assert not all(np.array_equal(a, b) for a, b in zip(frozen, built.backbone.get_weights(), strict=True))
