from __future__ import annotations

import asyncio
import io
import time
import warnings
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from inference.images.decode import DecodedImage, decode_image, decode_image_async, sample_frame_indices
from inference.images.formats import heif_supported
from inference.images.limits import ImageLimits, ImageRejected
from inference.images.perceptual_hash import hamming, phash
from tests.fakes import images as fake
from tests.fakes.images import PHOTO_NAMES, photo_bytes

# The hostile corpus: (name, builder, expected reason code). Builders run inside the timed test.
REJECTED: list[tuple[str, Callable[[], bytes], str]] = [
    ("zero_bytes", lambda: b"", "empty"),
    ("png_cut_in_image_data", lambda: fake.encode(fake.gradient(400, 300), "PNG")[:500], "corrupt"),
    ("jpeg_cut_in_its_header", lambda: fake.encode(fake.gradient(400, 300), "JPEG")[:300], "corrupt"),
    ("png_with_a_million_empty_chunks", lambda: fake.png_of_empty_chunks(2_000_000), "corrupt"),
    ("text_named_jpg", lambda: fake.PLAIN_TEXT, "not_an_image"),
    ("html", lambda: fake.HTML_TEXT, "not_an_image"),
    ("svg", lambda: fake.SVG_TEXT, "vector_image"),
    ("random_bytes", lambda: bytes(range(256)) * 8, "not_an_image"),
    ("png_header_100000x100000", lambda: fake.png_declaring(100_000, 100_000), "too_many_pixels"),
    ("png_header_8000x8000", lambda: fake.png_declaring(8000, 8000), "too_many_pixels"),
    ("gif_of_a_million_tiny_frames", fake.gif_of_tiny_frames, "animation_too_large"),
    (
        "heic_without_plugin",
        lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
        "unsupported_format",
    ),
]


@pytest.mark.parametrize(
    ("builder", "reason"), [(b, r) for _, b, r in REJECTED], ids=[n for n, _, _ in REJECTED]
)
def test_hostile_inputs_are_rejected_quickly_with_a_reason(builder: Callable[[], bytes], reason: str) -> None:
    data = builder()
    if reason == "unsupported_format" and heif_supported():
        pytest.skip("pillow-heif is installed, so HEIC is decoded instead of rejected")
    started = time.perf_counter()
    with pytest.raises(ImageRejected) as caught:
        decode_image(data)
    assert time.perf_counter() - started < 2.0
    assert caught.value.reason_code == reason
    assert caught.value.message and "Traceback" not in caught.value.message


def test_real_20000x20000_image_is_rejected_by_the_pixel_cap_before_decoding() -> None:
    data = fake.real_bilevel_png(20_000, 20_000)
    # The file is genuine: its pixel stream is real (rows of 2500 bytes plus a filter byte each).
    idat_length = int.from_bytes(data[33:37], "big")
    assert len(zlib.decompressobj().decompress(data[41 : 41 + idat_length], 2_501 * 100)) == 2_501 * 100
    started = time.perf_counter()
    with pytest.raises(ImageRejected) as caught:
        decode_image(data)
    assert time.perf_counter() - started < 0.5
    assert caught.value.reason_code == "too_many_pixels"


def test_pixel_cap_applies_below_pillows_own_bomb_limit() -> None:
    data = fake.encode(Image.new("RGB", (300, 200)), "PNG")
    with pytest.raises(ImageRejected) as caught:
        decode_image(data, limits=ImageLimits(max_pixels=50_000))
    assert caught.value.reason_code == "too_many_pixels"
    assert decode_image(data, limits=ImageLimits(max_pixels=60_000)).pixels == 60_000


def test_large_jpeg_is_checked_at_a_reduced_decoding_scale() -> None:
    data = fake.large_jpeg(12_000, 9_000)  # 108 MP, well past the 40 MP cap on decoded pixels
    started = time.perf_counter()
    decoded = decode_image(data)
    assert time.perf_counter() - started < 2.0
    assert (decoded.width, decoded.height) == (12_000, 9_000)
    assert decoded.frames[0].size == (640, 480)
    # At full resolution for the models, the cap alone picks the scale: 1/2 is 27 MP.
    full = decode_image(data, limits=ImageLimits(max_side_for_models=None))
    assert full.frames[0].size == (6_000, 4_500)


def test_pillows_bomb_warning_is_not_raised_for_sizes_lumi_decides_on() -> None:
    """Past ~89 MP Pillow warns; Lumi's own caps decide instead, with no warning in the log."""
    data = fake.large_jpeg(12_000, 9_000)  # 108 MP: accepted by Lumi's 120 MP ceiling for JPEG
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filters_before = list(warnings.filters)
        decoded = decode_image(data)
        with pytest.raises(ImageRejected) as rejected:
            decode_image(fake.jpeg_declaring(11_000, 12_000))  # 132 MP: refused by Lumi, not Pillow
        with pytest.raises(ImageRejected) as absurd:
            decode_image(fake.jpeg_declaring(65_535, 65_535))  # Pillow's DecompressionBombError
        assert warnings.filters == filters_before  # nothing changed for the rest of the process
    assert [w.message for w in caught if issubclass(w.category, Image.DecompressionBombWarning)] == []
    assert (decoded.width, decoded.height) == (12_000, 9_000)
    assert rejected.value.reason_code == absurd.value.reason_code == "too_many_pixels"
    # Only Lumi's own openings are exempt: Pillow still warns anyone else in the process.
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(io.BytesIO(data)).close()


def test_png_of_the_same_size_is_still_too_many_pixels() -> None:
    with pytest.raises(ImageRejected) as caught:
        decode_image(fake.real_bilevel_png(12_000, 9_000))
    assert caught.value.reason_code == "too_many_pixels"
    assert caught.value.size == (12_000, 9_000)
    assert caught.value.too_large_to_check


@pytest.mark.parametrize("size", [(11_000, 12_000), (65_535, 65_535)])
def test_jpeg_claiming_more_than_the_declared_ceiling_is_rejected_before_decoding(
    size: tuple[int, int],
) -> None:
    started = time.perf_counter()
    with pytest.raises(ImageRejected) as caught:
        decode_image(fake.jpeg_declaring(*size))
    assert time.perf_counter() - started < 0.5
    assert caught.value.reason_code == "too_many_pixels"
    assert caught.value.too_large_to_check


def test_corrupt_files_are_not_counted_as_too_large() -> None:
    with pytest.raises(ImageRejected) as caught:
        decode_image(fake.encode(fake.gradient(400, 300), "PNG")[:500])
    assert not caught.value.too_large_to_check


@pytest.mark.parametrize(
    ("data", "image_format"),
    [
        (fake.encode(fake.gradient(400, 300), "PNG")[:500], "PNG"),
        (fake.encode(fake.gradient(400, 300), "JPEG")[:300], "JPEG"),
        (fake.encode(fake.gradient(), "GIF")[:100], "GIF"),
        (b"RIFF\x00\x01\x00\x00WEBPVP8 " + bytes(64), "WEBP"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIF"),
        (fake.PLAIN_TEXT, None),
        (b"BMW and other words that start like a bitmap", None),
        (bytes(range(256)) * 8, None),
    ],
    ids=["png", "jpeg", "gif", "webp", "heic", "text", "text_starting_with_bm", "random_bytes"],
)
def test_a_rejection_names_the_image_format_the_bytes_start_like(
    data: bytes, image_format: str | None
) -> None:
    """A viewer may show part of a damaged file that starts like an image; moderation must know."""
    if image_format == "HEIF" and heif_supported():
        pytest.skip("pillow-heif is installed, so HEIC is decoded instead of rejected")
    with pytest.raises(ImageRejected) as caught:
        decode_image(data)
    assert caught.value.image_format == image_format
    assert caught.value.may_be_shown is (image_format is not None)
    if image_format in ("PNG", "JPEG", "GIF", "WEBP"):
        assert caught.value.reason_code == "corrupt"


def test_byte_cap_is_checked_before_anything_else() -> None:
    with pytest.raises(ImageRejected) as caught:
        decode_image(b"\x89PNG" + b"\x00" * 2000, limits=ImageLimits(max_bytes=1024))
    assert caught.value.reason_code == "too_large"


def test_animated_gif_with_hundreds_of_frames_is_sampled() -> None:
    data = fake.animated_gif(400)
    started = time.perf_counter()
    decoded = decode_image(data, limits=ImageLimits(max_frames=7))
    assert time.perf_counter() - started < 2.0
    assert decoded.animated and decoded.format == "GIF"
    assert decoded.n_frames_total == 400
    assert decoded.frame_indices == [0, 66, 133, 200, 266, 332, 399]
    assert len(decoded.frames) == 7
    # Each frame was painted a different colour; sampled frames must be the frames asked for.
    for index, frame in zip(decoded.frame_indices, decoded.frames, strict=True):
        expected = ((index * 7) % 256, (index * 13) % 256, (index * 29) % 256)
        assert np.abs(np.asarray(frame, dtype=int)[5, 5] - expected).max() <= 8


def test_animation_beyond_the_decode_budget_is_rejected_early() -> None:
    data = fake.animated_gif(40, (200, 200))
    started = time.perf_counter()
    with pytest.raises(ImageRejected) as caught:
        decode_image(data, limits=ImageLimits(max_animation_pixels=1_000_000))
    assert caught.value.reason_code == "animation_too_large"
    assert time.perf_counter() - started < 1.0


def test_animated_webp_and_apng_are_sampled() -> None:
    frames = [Image.new("RGB", (32, 32), (i * 20, 0, 0)) for i in range(12)]
    for fmt in ("WEBP", "PNG"):
        data = fake.encode(
            frames[0], fmt, save_all=True, append_images=frames[1:], duration=40, lossless=True
        )
        decoded = decode_image(data, limits=ImageLimits(max_frames=5))
        assert decoded.animated, fmt
        assert decoded.n_frames_total == 12
        assert decoded.frame_indices == [0, 3, 6, 8, 11]
        assert [int(np.asarray(frame)[1, 1, 0]) for frame in decoded.frames] == [0, 60, 120, 160, 220]


def test_cmyk_jpeg_becomes_rgb() -> None:
    decoded = decode_image(fake.cmyk_jpeg())
    frame = decoded.frames[0]
    assert frame.mode == "RGB"
    # The gradient runs red left to right: the right edge must be much redder than the left.
    red = np.asarray(frame, dtype=int)[30, :, 0]
    assert red[90] - red[3] > 150


def test_16_bit_png_is_scaled_to_8_bit() -> None:
    frame = decode_image(fake.png_16bit_grey()).frames[0]
    assert frame.mode == "RGB"
    row = np.asarray(frame)[0, :, 0]
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row.astype(int)) >= 0)


def test_palette_with_transparency_and_rgba_are_composited_on_grey() -> None:
    assert decode_image(fake.palette_png_with_transparency()).frames[0].mode == "RGB"
    fully_transparent = decode_image(fake.rgba_png()).frames[0]
    assert np.all(np.asarray(fully_transparent) == 128)


def test_bilevel_and_greyscale_images_become_rgb() -> None:
    for mode in ("1", "L", "LA", "I", "F"):
        image = fake.gradient().convert("L").convert(mode)
        fmt = "TIFF" if mode in ("I", "F") else "PNG"
        frame = decode_image(fake.encode(image, fmt)).frames[0]
        assert frame.mode == "RGB", mode
        assert frame.size == (96, 64)


def test_exif_orientation_is_applied() -> None:
    upright = fake.gradient(96, 64)
    decoded = decode_image(fake.exif_rotated_jpeg(6))
    assert (decoded.width, decoded.height) == (64, 96)
    frame = np.asarray(decoded.frames[0], dtype=int)
    expected = np.asarray(upright.transpose(Image.Transpose.ROTATE_270), dtype=int)
    assert frame.shape == expected.shape
    assert np.abs(frame - expected).mean() < 4


def test_large_frames_are_downscaled_for_the_models() -> None:
    data = fake.encode(fake.gradient(3000, 1500), "JPEG")
    decoded = decode_image(data, limits=ImageLimits(max_side_for_models=500))
    assert (decoded.width, decoded.height) == (3000, 1500)
    assert decoded.frames[0].size == (500, 250)
    full = decode_image(data, limits=ImageLimits(max_side_for_models=None))
    assert full.frames[0].size == (3000, 1500)


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_package_photos_decode(name: str) -> None:
    data = photo_bytes(name)
    if data is None:
        pytest.skip(f"the package that ships {name} is not installed")
    decoded = decode_image(data)
    assert isinstance(decoded, DecodedImage)
    assert not decoded.animated and decoded.n_frames_total == 1
    assert decoded.frames[0].mode == "RGB"
    assert max(decoded.frames[0].size) <= 640


async def test_async_decode_keeps_the_event_loop_responsive() -> None:
    data = fake.encode(fake.gradient(3000, 2000), "PNG", compress_level=1)
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    decoded = await decode_image_async(data, limits=ImageLimits())
    elapsed = time.perf_counter() - started
    ticking.cancel()
    assert decoded.width == 3000 and max(decoded.frames[0].size) == 640
    assert len(gaps) >= 3, f"the loop ticked only {len(gaps)} times during a {elapsed:.3f} s decode"
    assert max(gaps) < 0.1
    with pytest.raises(ImageRejected):
        await decode_image_async(b"")


def test_sample_frame_indices() -> None:
    assert sample_frame_indices(5, 7) == [0, 1, 2, 3, 4]
    assert sample_frame_indices(100, 3) == [0, 50, 99]
    assert sample_frame_indices(100, 1) == [0]
    assert sample_frame_indices(100, 2) == [0, 99]
    assert sample_frame_indices(101, 8) == [0, 17, 33, 50, 67, 83, 100]
    assert sample_frame_indices(0, 7) == []


def test_phash_matches_near_duplicates_and_separates_different_pictures() -> None:
    photos = [photo_bytes(name) for name in ("astronaut", "coffee", "chelsea", "rocket")]
    if any(photo is None for photo in photos):
        pytest.skip("scikit-image is not installed")
    images = [decode_image(photo).frames[0] for photo in photos if photo is not None]
    hashes = [phash(image) for image in images]
    assert all(len(value) == 16 for value in hashes)
    for image, value in zip(images, hashes, strict=True):
        resized = image.resize((image.width // 2, image.height // 2))
        recompressed = decode_image(fake.encode(resized, "JPEG", quality=60)).frames[0]
        assert hamming(value, phash(recompressed)) <= 6
        assert phash(np.asarray(image)) == value
    for i, a in enumerate(hashes):
        for b in hashes[i + 1 :]:
            assert hamming(a, b) >= 16


def test_avif_decodes_when_pillow_has_the_codec() -> None:
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow build has no AVIF codec")
    decoded = decode_image(fake.encode(fake.gradient(), "AVIF"))
    assert decoded.format == "AVIF" and decoded.frames[0].size == (96, 64)
