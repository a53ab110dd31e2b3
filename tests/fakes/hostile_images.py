"""Edits anyone can make to a photo that viewers still show: the corpus of the moderation bypass.

Each edit starts from a package photo (``rocket.jpg``, ``chelsea.png`` from scikit-image) and changes
only what browsers, Discord's clients and libjpeg/libpng tolerate: a missing end, oversized or broken
metadata chunks, a missing trailer. ``tests/fakes/test_hostile_images.py`` checks in headless
Chromium that each one still shows; the decoding and moderation tests check that Lumi reads them too.

``SHOWN_NOT_DECODED`` are edits a browser still shows part of but Lumi cannot decode (image data cut
short): moderation must treat them as images it could not check, not as junk.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from tests.fakes.images import encode, photo_bytes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Edit:
    """One hostile edit: its name, the photo it starts from, and the edit itself.

    ``keeps_pixels``: the edit leaves every pixel as it was (only metadata or trailers change), so the
    decoded image must equal the original's.
    """

    name: str
    photo: str
    apply: Callable[[bytes], bytes]
    keeps_pixels: bool

    def build(self) -> bytes | None:
        """The edited file; None when the package with the photo is not installed."""
        original = photo_bytes(self.photo)
        return None if original is None else self.apply(original)


# ----- PNG chunks -----


def png_chunk(kind: bytes, payload: bytes, *, crc: int | None = None) -> bytes:
    checksum = zlib.crc32(kind + payload) if crc is None else crc
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", checksum)


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of each chunk of a well-formed PNG."""
    chunks = []
    position = len(PNG_SIGNATURE)
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunks.append((kind, data[position + 8 : position + 8 + length]))
        position += 12 + length
    return chunks


def _png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return PNG_SIGNATURE + b"".join(png_chunk(kind, payload) for kind, payload in chunks)


def _before_image_data(data: bytes, *extra: bytes) -> bytes:
    """The PNG with ``extra`` (whole chunks) inserted right before its first IDAT."""
    first_idat = data.index(b"IDAT") - 4
    return data[:first_idat] + b"".join(extra) + data[first_idat:]


def _inflates_to(size: int) -> bytes:
    """About 1 KB of zlib data that inflates to ``size`` bytes of text."""
    return zlib.compress(b"A" * size, 9)


def png_ztxt_bomb(data: bytes) -> bytes:
    """A 1 KB ``zTXt`` before the image data whose text inflates to 2 MB (Pillow's cap is 1 MB)."""
    return _before_image_data(data, png_chunk(b"zTXt", b"Comment\x00\x00" + _inflates_to(2_000_000)))


def png_itxt_bomb(data: bytes) -> bytes:
    """The same as a compressed international text chunk (``iTXt``)."""
    payload = b"Comment\x00\x01\x00en\x00Comment\x00" + _inflates_to(2_000_000)
    return _before_image_data(data, png_chunk(b"iTXt", payload))


def png_text_memory_bomb(data: bytes) -> bytes:
    """70 ``zTXt`` chunks of 1 KB, each inflating to just under 1 MB: 70 MB of text in all (Pillow's
    cap for a whole file is 64 MB)."""
    chunk = png_chunk(b"zTXt", b"Comment\x00\x00" + _inflates_to(1_000_000))
    return _before_image_data(data, chunk * 70)


def png_huge_text(data: bytes) -> bytes:
    """An uncompressed ``tEXt`` of 2 MB before the image data."""
    return _before_image_data(data, png_chunk(b"tEXt", b"Comment\x00" + b"A" * 2_000_000))


def png_iccp_bomb(data: bytes) -> bytes:
    """The colour profile (``iCCP``) replaced by 1 KB of zlib data that inflates to 2 MB."""
    chunks = [(kind, payload) for kind, payload in png_chunks(data) if kind != b"iCCP"]
    bomb = (b"iCCP", b"ICC Profile\x00\x00" + _inflates_to(2_000_000))
    return _png([chunks[0], bomb, *chunks[1:]])


def png_bad_ancillary_crc(data: bytes) -> bytes:
    """A ``tEXt`` chunk before the image data whose CRC is wrong (libpng warns and skips it)."""
    return _before_image_data(data, png_chunk(b"tEXt", b"Comment\x00hello", crc=0))


def png_bad_transparency_crc(data: bytes) -> bytes:
    """A grey ``tRNS`` (transparency) chunk with a wrong CRC: libpng skips it, so nothing turns clear."""
    grey_level = struct.pack(">HHH", 128, 128, 128)
    return _before_image_data(data, png_chunk(b"tRNS", grey_level, crc=0))


def png_short_gamma(data: bytes) -> bytes:
    """A ``gAMA`` chunk two bytes long instead of four (Pillow refuses it: "Truncated gAMA chunk")."""
    return _before_image_data(data, png_chunk(b"gAMA", b"\x00\x01"))


def png_without_iend(data: bytes) -> bytes:
    assert data.endswith(png_chunk(b"IEND", b""))
    return data[:-12]


def png_cut_in_image_data(data: bytes) -> bytes:
    """Cut at 60 % of the file, in the middle of the image data: browsers show the rows that arrived."""
    return data[: len(data) * 6 // 10]


# ----- JPEG -----


def _scan_start(data: bytes) -> int:
    """Where the first scan's entropy-coded data begins (after its SOS header)."""
    sos = data.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")


def jpeg_without_eoi(data: bytes) -> bytes:
    """The last two bytes, the end-of-image marker, removed."""
    assert data.endswith(b"\xff\xd9")
    return data[:-2]


def jpeg_cut_in_scan(fraction: float) -> Callable[[bytes], bytes]:
    """Cut after ``fraction`` of the scan data: browsers show the rows that arrived, the rest grey."""

    def cut(data: bytes) -> bytes:
        start = _scan_start(data)
        return data[: start + int((len(data) - start) * fraction)]

    return cut


def progressive(data: bytes) -> bytes:
    """The photo re-encoded as a progressive JPEG (coarse scans first, refined by later ones)."""
    with Image.open(io.BytesIO(data)) as image:
        return encode(image.convert("RGB"), "JPEG", quality=90, progressive=True)


def progressive_cut_in_later_segment(data: bytes) -> bytes:
    """A progressive JPEG cut inside the header of its fourth scan: the first three arrived whole."""
    encoded = progressive(data)
    position = 0
    for _ in range(4):
        position = encoded.index(b"\xff\xda", position + 1)
    return encoded[: position + 5]


def progressive_cut_in_scan(data: bytes) -> bytes:
    encoded = progressive(data)
    return encoded[: len(encoded) // 2]


# ----- GIF -----


def gif_of(data: bytes) -> bytes:
    """The photo as a 256-colour GIF."""
    with Image.open(io.BytesIO(data)) as image:
        return encode(image.convert("RGB").quantize(256), "GIF")


def gif_without_trailer(data: bytes) -> bytes:
    encoded = gif_of(data)
    assert encoded.endswith(b";")
    return encoded[:-1]


def gif_cut_in_image_data(data: bytes) -> bytes:
    encoded = gif_of(data)
    return encoded[: len(encoded) * 6 // 10]


JPEG_PHOTO = "rocket"
PNG_PHOTO = "chelsea"

# Viewers show these, and Lumi must decode them (see the module docstring).
SHOWN: tuple[Edit, ...] = (
    Edit("jpeg_without_end_marker", JPEG_PHOTO, jpeg_without_eoi, keeps_pixels=True),
    Edit("jpeg_cut_at_90_percent_of_scan", JPEG_PHOTO, jpeg_cut_in_scan(0.9), keeps_pixels=False),
    Edit("jpeg_cut_at_50_percent_of_scan", JPEG_PHOTO, jpeg_cut_in_scan(0.5), keeps_pixels=False),
    Edit("jpeg_cut_at_20_percent_of_scan", JPEG_PHOTO, jpeg_cut_in_scan(0.2), keeps_pixels=False),
    Edit("progressive_jpeg_cut_in_a_scan", JPEG_PHOTO, progressive_cut_in_scan, keeps_pixels=False),
    Edit(
        "progressive_jpeg_cut_in_a_segment",
        JPEG_PHOTO,
        progressive_cut_in_later_segment,
        keeps_pixels=False,
    ),
    Edit("png_ztxt_inflating_past_1mb", PNG_PHOTO, png_ztxt_bomb, keeps_pixels=True),
    Edit("png_itxt_inflating_past_1mb", PNG_PHOTO, png_itxt_bomb, keeps_pixels=True),
    Edit("png_70mb_of_compressed_text", PNG_PHOTO, png_text_memory_bomb, keeps_pixels=True),
    Edit("png_2mb_text_chunk", PNG_PHOTO, png_huge_text, keeps_pixels=True),
    Edit("png_colour_profile_inflating_past_1mb", PNG_PHOTO, png_iccp_bomb, keeps_pixels=True),
    Edit("png_bad_crc_on_a_text_chunk", PNG_PHOTO, png_bad_ancillary_crc, keeps_pixels=True),
    Edit("png_bad_crc_on_transparency", PNG_PHOTO, png_bad_transparency_crc, keeps_pixels=True),
    Edit("png_short_gamma_chunk", PNG_PHOTO, png_short_gamma, keeps_pixels=True),
    Edit("png_without_iend", PNG_PHOTO, png_without_iend, keeps_pixels=True),
    Edit("gif_without_trailer", PNG_PHOTO, gif_without_trailer, keeps_pixels=True),
)

# Viewers show part of these; Lumi cannot decode them (see the module docstring).
SHOWN_NOT_DECODED: tuple[Edit, ...] = (
    Edit("png_cut_in_image_data", PNG_PHOTO, png_cut_in_image_data, keeps_pixels=False),
    Edit("gif_cut_in_image_data", PNG_PHOTO, gif_cut_in_image_data, keeps_pixels=False),
)


def original_of(edit: Edit) -> bytes | None:
    """The file the edit changed, in the same format (the GIF edits start from the photo as a GIF)."""
    original = photo_bytes(edit.photo)
    if original is None:
        return None
    if edit.name.startswith("gif_"):
        return gif_of(original)
    if edit.name.startswith("progressive_"):
        return progressive(original)
    return original
