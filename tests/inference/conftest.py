from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, TypeVar

import pytest
from PIL import Image

from inference.images.decode import decode_image
from inference.runners.base import ModelUnavailable
from inference.runners.emotions import EmotionRunner
from inference.runners.faces import FaceRunner
from inference.runners.nudenet import NudeNetRunner
from inference.runners.open_nsfw import OpenNsfwRunner
from tests.fakes.images import PHOTO_NAMES, photo_bytes
from tests.inference.remote.meshy.parts import client as client
from tests.inference.remote.meshy.parts import meshy as meshy


class _Loadable(Protocol):
    def load(self) -> None: ...

    def close(self) -> None: ...


LoadableT = TypeVar("LoadableT", bound=_Loadable)


def _loaded(runner: LoadableT) -> Iterator[LoadableT]:
    """``runner`` loaded for the fixture's lifetime; the test is skipped where its model is not installed."""
    try:
        runner.load()
    except ModelUnavailable as exc:
        pytest.skip(str(exc))
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def nudenet_runner() -> Iterator[NudeNetRunner]:
    yield from _loaded(NudeNetRunner("cpu", intra_op_threads=1))


@pytest.fixture(scope="session")
def open_nsfw_runner() -> Iterator[OpenNsfwRunner]:
    yield from _loaded(OpenNsfwRunner("cpu", intra_op_threads=1))


@pytest.fixture(scope="session")
def face_runner() -> Iterator[FaceRunner]:
    yield from _loaded(FaceRunner("cpu"))


@pytest.fixture(scope="session")
def emotion_runner() -> Iterator[EmotionRunner]:
    yield from _loaded(EmotionRunner("cpu"))


@pytest.fixture(scope="session")
def package_photos() -> dict[str, Image.Image]:
    """First decoded frame of every package photo that is installed here."""
    photos: dict[str, Image.Image] = {}
    for name in PHOTO_NAMES:
        data = photo_bytes(name)
        if data is not None:
            photos[name] = decode_image(data).frames[0]
    if len(photos) < 3:
        pytest.skip("fewer than 3 package photos are installed (skimage, sklearn, matplotlib, ultralytics)")
    return photos
