"""Recognising untrusted image bytes before any pixel is decoded.

Restricts Pillow to the formats Discord users post, turns markup, text, compressed data and HEIC/AVIF
without a decoder into clear rejections, and counts frames from headers so a long animation is refused
cheaply.
"""

from __future__ import annotations

import io
import struct
import threading
import warnings
import zlib
from functools import cache
from typing import Final

from PIL import Image, UnidentifiedImageError

from inference.images.limits import ImageRejected, corrupt, too_many_pixels

__all__ = ["heif_supported", "image_signature"]

# Formats Discord users actually post. Restricting Image.open to these keeps exotic, rarely audited
# decoders (EPS runs Ghostscript, PSD, FITS, ...) away from untrusted input.
_BASE_FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO")
# Only these formats show more than their first frame in a Discord client; a TIFF page or an MPO depth
# map nobody sees is not worth the decode time.
ANIMATED_FORMATS: Final = frozenset({"GIF", "WEBP", "PNG"})
_HEIF_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})
# The first bytes of each format a browser or a Discord client shows. TIFF is left out: neither shows
# it, so a TIFF that Lumi cannot decode is seen by nobody either.
_SIGNATURES: Final = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
# Sizes of the BMP info headers that exist; "BM" alone starts too many text files to mean a bitmap.
_BMP_INFO_HEADER_SIZES: Final = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


@cache
def heif_supported() -> bool:
    """Whether HEIC/HEIF can be decoded (needs the optional ``pillow-heif`` package)."""
    try:
        import pillow_heif  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return False
    # Registering a plugin is pillow-heif's documented way to teach Pillow the format.
    pillow_heif.register_heif_opener()
    return True


def _allowed_formats() -> tuple[str, ...]:
    Image.init()
    # MPO has no opener of its own in recent Pillow (the JPEG opener returns MPO files).
    return tuple(fmt for fmt in (*_BASE_FORMATS, "HEIF", "AVIF") if fmt in Image.OPEN)


def sniff_rejection(data: bytes) -> ImageRejected | None:
    """Recognise inputs Pillow would fail on with an unhelpful message (markup, text, HEIC)."""
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n\x0c")
    lowered = head.lower()
    if lowered.startswith(b"<"):
        if b"<svg" in lowered:
            return ImageRejected(
                "vector_image", "SVG (vector) images are not supported; please post a PNG or JPEG."
            )
        return ImageRejected("not_an_image", "This file is an HTML/XML document, not an image.")
    if data[:2] == b"\x1f\x8b":
        return ImageRejected("not_an_image", "This file is compressed data (gzip), not an image.")
    if len(data) >= 12 and data[4:8] == b"ftyp":
        brands = _ftyp_brands(data)
        if brands & _AVIF_BRANDS:
            if "AVIF" in _allowed_formats():
                return None
            if not heif_supported():
                return ImageRejected(
                    "unsupported_format",
                    "AVIF images can't be checked on this bot; please post a JPEG or PNG.",
                )
        if brands & _HEIF_BRANDS and not heif_supported():
            return ImageRejected(
                "unsupported_format",
                "HEIC/HEIF photos can't be checked on this bot yet (the optional pillow-heif package is "
                "not installed); please post a JPEG or PNG.",
            )
    return None


def image_signature(data: bytes) -> str | None:
    """The image format whose signature ``data`` starts with (None: none that viewers show).

    A file that starts like an image but that Lumi cannot decode may still be shown, in part, by a
    browser or a Discord client; moderation treats it as an image it could not check, not as junk.
    """
    for prefix, image_format in _SIGNATURES:
        if data.startswith(prefix):
            return image_format
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _BMP_INFO_HEADER_SIZES:
        return "BMP"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        brands = _ftyp_brands(data)
        if brands & _AVIF_BRANDS:
            return "AVIF"
        if brands & _HEIF_BRANDS:
            return "HEIF"
    return None


def _ftyp_brands(data: bytes) -> set[bytes]:
    """Major and compatible brands of an ISO media file (AVIF files often say ``mif1`` first)."""
    box_size = int.from_bytes(data[:4], "big")
    end = min(max(box_size, 16), len(data), 256)
    return {data[8:12]} | {data[i : i + 4] for i in range(16, end - 3, 4)}


def _looks_like_text(data: bytes) -> bool:
    sample = data[:1024]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character may be cut at the sample's end.
        try:
            text = sample[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return bool(text) and all(ch.isprintable() or ch in "\r\n\t" for ch in text)


# `warnings.catch_warnings` swaps the process's filter list and puts it back on exit, which is not safe
# when two threads overlap: one could restore the other's list. Lumi's own openings (worker threads) take
# turns through this lock; it is held for the header parse only, never while pixels are decoded.
_OPEN_LOCK: Final = threading.Lock()


def open_image(data: bytes) -> Image.Image:
    """Open untrusted bytes (header only), or raise ``ImageRejected``.

    Lumi's ``ImageLimits`` are the only size limit that decides: the caller checks the declared size
    right after opening. Pillow's ``DecompressionBombWarning`` (past ~89 MP, below Lumi's 120 MP for
    JPEG) is therefore silenced here, for this call only; its ``DecompressionBombError`` (past ~179 MP)
    still ends in Lumi's "too many pixels" rejection.
    """
    formats = _allowed_formats()
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as exc:
        raise too_many_pixels() from exc
    except UnidentifiedImageError as exc:
        if image_signature(data) is not None:
            # It starts like an image Pillow can read, so its header is what is broken.
            raise corrupt() from exc
        if _looks_like_text(data):
            raise ImageRejected("not_an_image", "This file is text, not an image.") from exc
        raise ImageRejected(
            "not_an_image", "This file is not an image in a supported format (JPEG, PNG, GIF, WebP)."
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        raise corrupt() from exc


def gif_frame_count(data: bytes, limit: int) -> int:
    """Count a GIF's frames by walking its blocks, stopping past ``limit``.

    Pillow's ``n_frames`` walks the same blocks but does Python work per frame; a 25 MB GIF of a million
    1x1 frames would hold a worker thread for tens of seconds before any limit could be checked.
    Returns ``limit + 1`` as soon as the count, or the number of data sub-blocks, shows the file is
    beyond what a real encoder writes for ``limit`` frames (encoders fill 255-byte sub-blocks).
    """
    if len(data) < 13:
        return 1
    position, end = 13, len(data)
    if data[10] & 0x80:
        position += 3 << ((data[10] & 0x07) + 1)
    frames = 0
    steps_left = end // 64 + 8 * limit + 1024
    while position < end:
        block = data[position]
        if block == 0x2C:
            frames += 1
            if frames > limit or position + 10 > end:
                break
            local_flags = data[position + 9]
            position += 10 + 1  # descriptor, then the LZW minimum code size byte
            if local_flags & 0x80:
                position += 3 << ((local_flags & 0x07) + 1)
        elif block == 0x21:
            position += 2
        else:
            # Trailer or garbage after the last frame; either way Pillow stops here too.
            break
        while position < end:
            size = data[position]
            position += size + 1
            steps_left -= 1
            if size == 0:
                break
        if steps_left < 0:
            return limit + 1
    return max(1, min(frames, limit + 1))


def frame_count(image: Image.Image) -> int:
    try:
        return max(1, int(getattr(image, "n_frames", 1)))
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        raise corrupt() from exc
