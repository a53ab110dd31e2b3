"""Damaged files that viewers still show are decoded as the viewer shows them, within the same limits.

The corpus (``tests.fakes.hostile_images``) is checked in headless Chromium by its own test. Here each
edit must decode: to exactly the original's pixels when only metadata or a trailer changed, and with the
rows that arrived matching the original when the file was cut short. Lumi changes none of Pillow's
process-wide settings to get there.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image, ImageFile, PngImagePlugin

from inference.images.decode import decode_image
from inference.images.limits import ImageRejected
from inference.images.repair import mend_for_viewing
from tests.fakes import images as fake
from tests.fakes.hostile_images import SHOWN, SHOWN_NOT_DECODED, Edit, original_of, png_ztxt_bomb

_IDS = [edit.name for edit in SHOWN]


def _files(edit: Edit) -> tuple[bytes, bytes]:
    edited, original = edit.build(), original_of(edit)
    if edited is None or original is None:
        pytest.skip(f"the package that ships the {edit.photo} photo is not installed")
    return edited, original


@pytest.mark.parametrize("edit", SHOWN, ids=_IDS)
def test_files_viewers_show_are_decoded_as_shown(edit: Edit) -> None:
    edited, original = _files(edit)
    decoded, expected = decode_image(edited), decode_image(original)
    assert (decoded.format, decoded.width, decoded.height) == (
        expected.format,
        expected.width,
        expected.height,
    )
    frame = np.asarray(decoded.frames[0], dtype=np.int16)
    reference = np.asarray(expected.frames[0], dtype=np.int16)
    if edit.keeps_pixels:
        assert np.array_equal(frame, reference)
    else:
        # The top tenth arrived in every cut; a progressive JPEG's later scans only refine it.
        band = frame.shape[0] // 10
        assert np.abs(frame[:band] - reference[:band]).mean() < 3.0


@pytest.mark.parametrize("edit", SHOWN_NOT_DECODED, ids=[edit.name for edit in SHOWN_NOT_DECODED])
def test_files_shown_but_not_decodable_are_rejected_as_images_people_may_see(edit: Edit) -> None:
    edited, _ = _files(edit)
    with pytest.raises(ImageRejected) as caught:
        decode_image(edited)
    assert caught.value.reason_code == "corrupt"
    assert caught.value.may_be_shown and caught.value.image_format in ("PNG", "GIF")


def test_pillows_process_wide_settings_are_left_alone() -> None:
    """The mending is per call: other threads' Pillow keeps refusing what it refused."""
    edited, _ = _files(SHOWN[6])  # the zTXt that inflates past 1 MB
    text_cap = PngImagePlugin.MAX_TEXT_CHUNK
    assert decode_image(edited).width == 451
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert text_cap == PngImagePlugin.MAX_TEXT_CHUNK == ImageFile.SAFEBLOCK
    with pytest.raises(ValueError, match="MAX_TEXT_CHUNK"), Image.open(io.BytesIO(edited)) as image:
        image.load()


def test_whole_files_are_passed_on_untouched() -> None:
    for data, image_format in (
        (fake.encode(fake.gradient(), "JPEG"), "JPEG"),
        (fake.padded_to(fake.encode(fake.gradient(), "JPEG"), 20_000), "JPEG"),
        (fake.encode(fake.gradient(), "PNG"), "PNG"),
        (fake.rgba_png(), "PNG"),
    ):
        assert mend_for_viewing(data, image_format) is data


def test_mending_keeps_transparency_and_drops_only_metadata() -> None:
    data = fake.palette_png_with_transparency()
    mended = mend_for_viewing(png_ztxt_bomb(data), "PNG")
    assert mended == data  # the bomb is gone and the rest is byte for byte the original
    with Image.open(io.BytesIO(mended)) as image:
        assert image.info["transparency"] == 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (png_ztxt_bomb(fake.png_declaring(100_000, 100_000)), "too_many_pixels"),
        (fake.jpeg_declaring(65_535, 65_535)[:-200], "too_many_pixels"),
        (fake.png_of_empty_chunks(2_000_000), "corrupt"),
    ],
    ids=["png_bomb_with_text_bomb", "jpeg_bomb_cut_short", "png_of_two_million_chunks"],
)
def test_bombs_are_still_refused_cheaply(data: bytes, reason: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ImageRejected) as caught:
        decode_image(data)
    assert time.perf_counter() - started < 0.5
    assert caught.value.reason_code == reason
