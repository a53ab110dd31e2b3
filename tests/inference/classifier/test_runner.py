"""The Keras classifier runner: loading checks, batched predictions, and serving through the registry."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prometheus_client import REGISTRY

from inference.classifier.metadata import METADATA_FILE, MODEL_FILE
from inference.classifier.runner import ClassifierInput, ClassScores, KerasClassifierRunner
from inference.registry import ModelKey, ModelRegistry
from inference.runners.base import ModelUnavailable
from tests.fakes.patterns import dots, stripes


def pictures(kind: str, count: int, *, seed: int = 100, size: int = 64) -> list[Image.Image]:
    draw = {"stripes": stripes, "dots": dots}[kind]
    rng = np.random.default_rng(seed)
    return [draw(rng, size) for _ in range(count)]


def test_predictions_follow_the_pattern_and_the_batch(pattern_classifier: Path) -> None:
    runner = KerasClassifierRunner(pattern_classifier, "cpu", max_batch=3)
    runner.load()
    try:
        assert runner.device == "cpu" and runner.metadata.positive_class == "stripes"
        # Larger pictures and numpy arrays are resized like training resized them.
        items: list[ClassifierInput] = [*pictures("stripes", 4, size=96), *pictures("dots", 4)]
        items[0] = np.asarray(items[0])
        results = runner.predict_batch(items)
        assert len(results) == 8 and runner.predict_batch([]) == []
        assert all(abs(sum(r.scores.values()) - 1.0) < 1e-5 for r in results)
        positives = [r.positive for r in results]
        assert min(positives[:4]) > 0.5 > max(positives[4:])
        assert results[0].top[0] == "stripes" and results[-1].top[0] == "dots"
        # One at a time gives what a batch gives (chunks of max_batch included).
        alone = [runner.predict_batch([item])[0].positive for item in items]
        np.testing.assert_allclose(alone, positives, atol=1e-5)
    finally:
        runner.close()


def test_broken_classifiers_are_unavailable_with_a_reason(pattern_classifier: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match=r"no metadata\.json"):
        KerasClassifierRunner(tmp_path, "cpu").load()
    copy = tmp_path / "copy"
    shutil.copytree(pattern_classifier, copy)
    metadata = json.loads((copy / METADATA_FILE).read_text())
    metadata["classes"] = ["a", "b", "c"]
    metadata["positive_class"] = "a"
    (copy / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(ModelUnavailable, match="metadata says"):
        KerasClassifierRunner(copy / MODEL_FILE, "cpu").load()
    (copy / MODEL_FILE).write_bytes(b"not a zip file")
    with pytest.raises(ModelUnavailable, match="Keras could not load"):
        KerasClassifierRunner(copy, "cpu").load()


async def test_served_by_the_registry_in_batches(pattern_classifier: Path) -> None:
    registry = ModelRegistry(device="cpu")
    key = ModelKey[ClassifierInput, ClassScores]("classifier-runner-test")

    def factory(device: str) -> KerasClassifierRunner:
        return KerasClassifierRunner(pattern_classifier, device, name=key.name)

    registry.register(key, factory)
    try:
        handle = await registry.get(key)
        assert handle.device == "cpu"
        items = [*pictures("stripes", 6, seed=5), *pictures("dots", 6, seed=6)]
        results = await asyncio.gather(*(handle.predict(item) for item in items))
        assert [r.positive > 0.5 for r in results] == [True] * 6 + [False] * 6
        labels = {"model": key.name}
        assert REGISTRY.get_sample_value("lumi_inference_batch_size_sum", labels) == 12
        batches = REGISTRY.get_sample_value("lumi_inference_batch_size_count", labels)
        assert batches is not None and batches < 12
        assert await registry.unregister(key) is True
        assert not registry.is_registered(key)
        with pytest.raises(ModelUnavailable, match="no such model"):
            await registry.get(key)
    finally:
        await registry.close()
