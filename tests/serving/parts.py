"""Pieces the serving tests share: served runners loaded for a test, and remote scores checked
against in-process ones."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence

import pytest

from inference.images import ImageLimits, decode_image
from inference.moderation import ImageModerator, at_moderation_scale
from inference.registry import ModelRegistry
from inference.runners.base import ModelUnavailable
from inference.serving.models import ServedRunner, ServeOptions, served_factory


def loaded_served_runners(names: Sequence[str], options: ServeOptions) -> Iterator[dict[str, ServedRunner]]:
    """The named runners as the service runs them, loaded, then closed; the test is skipped where one
    cannot load here."""
    runners = {name: served_factory(name, options)("cpu") for name in names}
    try:
        for runner in runners.values():
            runner.load()
    except ModelUnavailable as exc:
        pytest.skip(str(exc))
    yield runners
    for runner in runners.values():
        runner.close()


async def assert_same_moderation(
    local: ModelRegistry, remote: ModelRegistry, photos: dict[str, bytes]
) -> None:
    """Every photo gets the same NSFW score, label scores (±1e-4) and boxes from both registries."""
    limits = at_moderation_scale(ImageLimits())
    for name, data in photos.items():
        decoded = decode_image(data, limits=limits)
        here = await ImageModerator(local).analyse(decoded)
        there = await ImageModerator(remote).analyse(decoded)
        assert there.nsfw_score == pytest.approx(here.nsfw_score, abs=1e-4), name
        assert there.label_scores.keys() == here.label_scores.keys(), name
        for label, score in here.label_scores.items():
            assert there.label_scores[label] == pytest.approx(score, abs=1e-4), (name, label)
        assert [d.box for d in there.detections] == [d.box for d in here.detections], name


def http_get(url: str) -> tuple[int, bytes]:
    """A GET's status and body, error statuses included (the service's answers are the test)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
