"""A gateway with INFERENCE_URL runs its custom classifiers in the inference service; while the service
is down, a classifier is left out of each image's check with one log line per reason and interval,
and the image's other checks go on (NudeNet and open_nsfw run in this process here)."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.services.moderation.check_results import CheckStatus
from bot.services.moderation.checker import ImageChecker
from bot.services.moderation.classifiers.detector import ClassifierCatalog, ClassifierDetector
from inference.registry import ModelRegistry
from inference.serving.client import InferenceClient
from inference.serving.remote import RemoteModels, RemoteRunner
from tests.fakes.patterns import png_bytes


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[ImageChecker, ClassifierCatalog]]:
    client = InferenceClient(
        f"http://127.0.0.1:{_closed_port()}", timeout_s=2.0, retry_deadline_s=0.0, breaker_failures=1
    )
    # Only the classifiers are remote: the built-in models run here, to show the check goes on.
    registry = ModelRegistry("cpu", remote=RemoteModels(client, models=()))
    catalog = ClassifierCatalog(tmp_path / "classifiers", refresh_s=0.0)
    checker = ImageChecker(registry, model_threads=1, extra_detectors=[ClassifierDetector(catalog, registry)])
    yield checker, catalog
    await checker.close()
    await registry.close()


async def test_a_classifier_of_a_down_service_is_left_out_with_one_line_per_reason(
    gateway: tuple[ImageChecker, ClassifierCatalog],
    pattern_classifier: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    checker, catalog = gateway
    entry = catalog.add(pattern_classifier, category="violence", verify=None)
    caplog.set_level(logging.WARNING, logger="bot.services.moderation.classifiers.detector")
    verdicts = [await checker.check_image(png_bytes("stripes", seed=seed)) for seed in range(5)]

    handle = await checker.registry.get(entry.model_key)
    assert isinstance(handle.runner, RemoteRunner) and handle.runner.name == "classifier-1"
    assert all(verdict.status is CheckStatus.CHECKED for verdict in verdicts)
    assert all(
        "violence" not in verdict.scores and "sexual_explicit" in verdict.scores for verdict in verdicts
    )
    lines = [record.getMessage() for record in caplog.records if "left out" in record.getMessage()]
    assert len(lines) == 2, lines  # the first failure, then the open circuit; not one per image
    assert "custom classifier #1 (violence) left out" in lines[0] and "is unreachable" in lines[0]
    assert "failed repeatedly" in lines[1]
