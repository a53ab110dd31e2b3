from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from inference.images import ImageLimits, decode_image
from inference.moderation import at_moderation_scale
from inference.serving.models import ServedRunner, ServeOptions
from tests.fakes.images import PHOTO_NAMES, photo_bytes
from tests.serving.light_service import LightService
from tests.serving.parts import loaded_served_runners


@pytest.fixture(scope="session")
def moderation_photos() -> dict[str, bytes]:
    """The package photos installed here, as files (the gateway decodes them as moderation does)."""
    photos = {name: data for name in PHOTO_NAMES if (data := photo_bytes(name)) is not None}
    if len(photos) < 3:
        pytest.skip("fewer than 3 package photos are installed (skimage, sklearn, matplotlib, ultralytics)")
    return photos


@pytest.fixture(scope="session")
def moderation_frames(moderation_photos: dict[str, bytes]) -> dict[str, object]:
    limits = at_moderation_scale(ImageLimits())
    return {name: decode_image(data, limits=limits).frames[0] for name, data in moderation_photos.items()}


@pytest.fixture(scope="session")
def served_moderation() -> Iterator[dict[str, ServedRunner]]:
    """NudeNet and open_nsfw as the service runs them (loaded once); skipped where not installed."""
    yield from loaded_served_runners(("nudenet", "open_nsfw"), ServeOptions(device="cpu", intra_op_threads=1))


@pytest.fixture
async def light_service(served_moderation: dict[str, ServedRunner]) -> AsyncIterator[LightService]:
    service = await LightService(served_moderation).start()
    yield service
    await service.close()
