"""`lumi train classifier`, `lumi train evaluate` and `lumi models add-classifier`, as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bot.cli import main
from tests.fakes.patterns import write_pattern_folders


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("INFERENCE_DEVICE", "cpu")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "lumi-data"))
    return tmp_path


def test_train_small_cnn_then_evaluate(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = write_pattern_folders(workspace / "images", per_class=64, seed=11)
    out = workspace / "model"
    # Two epochs are too few for augmented images to pay off; the point here is the whole command.
    code = main(
        [
            "train",
            "classifier",
            str(images),
            "--out",
            str(out),
            "--backbone",
            "small",
            "--epochs",
            "2",
            "--weights",
            "none",
            "--image-size",
            "64",
            "--batch-size",
            "8",
            "--positive",
            "stripes",
            "--no-augment",
            "--seed",
            "1",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "128 images in 2 classes" in printed and "balance: largest/smallest class = 1.00" in printed
    assert "epoch 1/2  step" in printed and "epoch 2/2  step 13/13" in printed
    assert "lumi models add-classifier" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion_matrix.png",
        "metadata.json",
        "model.keras",
        "training_curves.png",
    ]
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["classes"] == ["dots", "stripes"] and metadata["positive_class"] == "stripes"
    assert metadata["input_size"] == [64, 64] and metadata["preprocessing"]["input_range"] == [0, 255]
    assert 0.0 < metadata["recommended_threshold"] < 1.0
    metrics = metadata["metrics"]
    assert metrics["accuracy"] >= 0.8, metrics  # chance is 0.5
    assert metrics["at_threshold"]["f1"] >= 0.8
    assert set(metrics["per_class"]) == {"dots", "stripes"}

    # The saved model, reloaded, predicts what training measured on the validation split.
    from inference.classifier.data import find_examples, load_pixels, stratified_split
    from inference.tensorflow_support import import_keras

    keras, _tf = import_keras()
    model = keras.models.load_model(str(out / "model.keras"), compile=False)
    _train, validation = stratified_split(find_examples(images), validation_fraction=0.2, seed=1)
    pixels = np.stack([load_pixels(e.path, (64, 64)) for e in validation]).astype(np.float32)
    predicted = np.asarray(model(pixels, training=False)).argmax(axis=1)
    truth = np.array([metadata["classes"].index(e.label) for e in validation])
    confusion = np.zeros((2, 2), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    assert confusion.tolist() == metrics["confusion_matrix"]

    assert main(["train", "evaluate", str(out), "--data", str(images)]) == 0
    report = capsys.readouterr().out
    assert "class    precision  recall     f1  support" in report
    assert f"stripes at threshold {metadata['recommended_threshold']:.3f}" in report
    assert main(["train", "evaluate", str(out / "model.keras"), "--data", str(images), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["accuracy"] >= 0.8 and document["data"]["counts"] == {"dots": 64, "stripes": 64}
    # A test set of the positive class alone is fine too (recall is what it measures).
    shutil.copytree(images / "stripes", workspace / "only" / "stripes")
    assert main(["train", "evaluate", str(out), "--data", str(workspace / "only"), "--threshold", "0.5"]) == 0
    assert "stripes at threshold 0.500" in capsys.readouterr().out


def test_training_problems_are_one_line_messages(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "classifier", str(workspace / "nothing"), "--out", str(workspace / "o")]) == 2
    assert "lumi: " in capsys.readouterr().err
    images = write_pattern_folders(workspace / "few", per_class=4)
    assert (
        main(["train", "classifier", str(images), "--out", str(workspace / "o"), "--positive", "dots"]) == 2
    )
    assert "at least 10 readable images" in capsys.readouterr().err
    assert main(["train", "evaluate", str(workspace / "few"), "--data", str(images)]) == 2
    assert "no metadata.json" in capsys.readouterr().err


def test_register_list_and_remove_classifiers(
    workspace: Path, pattern_classifier: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["models", "add-classifier", str(pattern_classifier), "--category", "violence", "--guild", "42"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "registered #1 violence (guild 42)" in printed and "/moderation setup category:violence" in printed
    assert (
        main(["models", "add-classifier", str(pattern_classifier), "--category", "weapons", "--act", "0.95"])
        == 0
    )
    assert "#2 weapons (global)" in capsys.readouterr().out

    assert main(["models", "classifiers"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listing] == ["#1", "#2"]
    assert main(["models", "classifiers", "--guild", "7", "--json"]) == 0
    assert [entry["id"] for entry in json.loads(capsys.readouterr().out)] == [2]
    assert main(["models"]) == 0
    assert "custom classifiers: 2 registered" in capsys.readouterr().out

    assert (
        main(["models", "add-classifier", str(pattern_classifier), "--category", "violence", "--act", "0.9"])
        == 2
    )
    assert "built-in category" in capsys.readouterr().err
    assert main(["models", "remove-classifier", "1"]) == 0
    assert "removed #1 (violence, guild 42" in capsys.readouterr().out
    assert main(["models", "remove-classifier", "1"]) == 2
    assert "no classifier #1" in capsys.readouterr().err
