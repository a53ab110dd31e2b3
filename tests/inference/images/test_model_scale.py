"""Decoding at the moderation models' own scale: the smallest decode that keeps the sides NudeNet and
open_nsfw need, and the rule for when frames decoded at one scale serve a reader at another."""

from __future__ import annotations

import pytest

from inference.images import DecodedImage, ImageLimits, decode_image, decodes_alike
from inference.moderation import MODERATION_SIDES, at_moderation_scale
from tests.fakes import images as fake

AT_MODEL_SCALE = at_moderation_scale(ImageLimits())
LEAST_LONG, LEAST_SHORT = MODERATION_SIDES


def _sides(decoded: DecodedImage) -> tuple[int, int]:
    width, height = decoded.frames[0].size
    return max(width, height), min(width, height)


@pytest.mark.parametrize(
    ("width", "height", "fmt"),
    [
        (4000, 3000, "JPEG"),  # drafted at 1/8 scale, then reduced once more
        (1600, 1200, "JPEG"),  # drafted at 1/2 scale
        (1200, 3000, "JPEG"),  # portrait: the short side decides
        (2000, 1500, "PNG"),  # no draft: a whole-factor box reduction
        (5000, 400, "PNG"),  # a panorama: its short side leaves little to reduce
    ],
)
def test_large_images_decode_to_the_smallest_frame_the_models_can_use(
    width: int, height: int, fmt: str
) -> None:
    decoded = decode_image(fake.encode(fake.gradient(width, height), fmt), limits=AT_MODEL_SCALE)
    long_side, short_side = _sides(decoded)
    assert (decoded.width, decoded.height) == (width, height)
    assert long_side >= LEAST_LONG and short_side >= LEAST_SHORT
    # Less than twice what a model needs on one side at least: one more halving would lose a side.
    assert long_side < 2 * LEAST_LONG or short_side < 2 * LEAST_SHORT


def test_small_images_keep_their_size() -> None:
    decoded = decode_image(fake.encode(fake.gradient(300, 200), "PNG"), limits=AT_MODEL_SCALE)
    assert decoded.frames[0].size == (300, 200)


def test_rotated_jpeg_keeps_its_orientation_at_model_scale() -> None:
    decoded = decode_image(fake.exif_rotated_jpeg(6), limits=AT_MODEL_SCALE)
    assert (decoded.width, decoded.height) == decoded.frames[0].size == (64, 96)


def test_frames_serve_another_scale_only_when_neither_scale_shrinks_them() -> None:
    caps = ImageLimits()
    small = fake.encode(fake.gradient(500, 400), "PNG")
    large = fake.encode(fake.gradient(1600, 1200), "JPEG")
    small_frames = decode_image(small, limits=AT_MODEL_SCALE)
    large_frames = decode_image(large, limits=AT_MODEL_SCALE)
    assert decodes_alike(small_frames, AT_MODEL_SCALE, caps)
    assert decode_image(small, limits=caps).frames[0].tobytes() == small_frames.frames[0].tobytes()
    # Shrunk at the models' scale: a reader at 640 px decodes the bytes itself.
    assert not decodes_alike(large_frames, AT_MODEL_SCALE, caps)
    assert decodes_alike(large_frames, AT_MODEL_SCALE, AT_MODEL_SCALE)
    # Other caps than the scale (here, fewer sampled frames) never share frames.
    assert not decodes_alike(small_frames, AT_MODEL_SCALE, ImageLimits(max_frames=1))


def test_least_sides_must_be_long_then_short() -> None:
    with pytest.raises(ValueError, match="least_sides_for_models"):
        ImageLimits(least_sides_for_models=(200, 300))
