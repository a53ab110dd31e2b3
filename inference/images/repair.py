"""Mending Lumi's copy of a damaged file so that Pillow decodes what a viewer shows.

Browsers, Discord's clients and libjpeg/libpng show a JPEG whose end is missing (what arrived, the
rest grey) and a PNG with oversized, malformed or corrupt ancillary chunks (they skip those chunks).
Pillow refuses both unless told to tolerate them through process-wide settings
(``ImageFile.LOAD_TRUNCATED_IMAGES``, ``PngImagePlugin.MAX_TEXT_CHUNK``), which every decoding thread
of the process would then share, and which also turn real decoding errors into silence. Lumi changes
neither: it mends its own copy of the bytes, per call, into the file the viewer effectively read:

- JPEG: an end-of-image marker where the data stops, after the last complete marker segment, or in
  the middle of a scan, where libjpeg fills the rest in as viewers do (Pillow's own tolerance for
  truncated JPEGs does exactly this).
- PNG: only the chunks that change the picture Pillow decodes are kept (the critical ones, ``tRNS``,
  ``eXIf`` and the APNG chunks); text, colour profiles and other metadata are dropped without being
  inflated, so a 1 KB ``zTXt`` that inflates to megabytes costs nothing; a kept ancillary chunk with a
  bad CRC or an impossible length is dropped, as libpng does; a missing ``IEND`` is added.

Both walks read headers only, never pixel data, and are linear in the bytes; the caller's size caps
apply to the mended copy as they would to the original.
"""

from __future__ import annotations

import re
import zlib
from typing import Final

from inference.images.limits import corrupt

__all__ = ["mend_for_viewing"]

_JPEG_EOI: Final = b"\xff\xd9"
_JPEG_SOS: Final = 0xDA
# Markers without a length field: TEM, RST0-7 (SOI and EOI are handled where they can occur).
_JPEG_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})
# Inside a scan, 0xFF is followed by 0x00 (a stuffed data byte), a restart marker or more 0xFF fill
# bytes; anything else starts the next marker, which ends the scan.
_JPEG_MARKER_AFTER_SCAN: Final = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# A real JPEG has a few dozen marker segments (a progressive one a few per scan); a file of millions of
# empty ones is left as it is rather than walked for seconds.
_JPEG_MAX_SEGMENTS: Final = 10_000

_PNG_SIGNATURE_LENGTH: Final = 8
_PNG_IEND: Final = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# Ancillary chunks that change the picture Pillow decodes: transparency, EXIF orientation, and the
# frames of an APNG. Every other ancillary chunk is metadata to a decoder that ignores colour management.
_PNG_KEPT_ANCILLARY: Final = frozenset({b"tRNS", b"eXIf", b"acTL", b"fcTL", b"fdAT"})
# Chunks whose CRC is worth checking: small, and read before the image data (Pillow checks those).
_PNG_CRC_CHECKED: Final = frozenset({b"tRNS", b"eXIf", b"acTL", b"fcTL"})
# Colour type -> the least tRNS length that means something (greyscale: one 16-bit sample, truecolour:
# three); libpng ignores a shorter one, Pillow refuses the image over it.
_PNG_TRNS_MIN_LENGTH: Final = {0: 2, 2: 6}
# A real encoder writes at most a few thousand chunks (IDATs of 8 KB and up); walking millions of empty
# ones in Python would hold a decoding thread for seconds, so such a file is refused as damaged.
_PNG_MAX_CHUNKS: Final = 100_000


def mend_for_viewing(data: bytes, image_format: str | None) -> bytes:
    """``data`` as a viewer would read it (see the module docstring); the same object when whole.

    Raises ``ImageRejected`` for a file beyond mending cheaply (a PNG of absurdly many chunks).
    """
    if image_format == "JPEG":
        return _complete_jpeg(data)
    if image_format == "PNG":
        return _viewed_png(data)
    return data


def _complete_jpeg(data: bytes) -> bytes:
    """The JPEG, ended with an end-of-image marker where its data stops (unchanged when it has one).

    Nothing is added before the first scan: with no image data at all, no viewer shows anything either.
    """
    if data.endswith(_JPEG_EOI):
        return data
    length = len(data)
    position = 2  # after the start-of-image marker
    seen_scan = False
    segments = 0
    while position < length:
        segments += 1
        if segments > _JPEG_MAX_SEGMENTS:
            return data
        if data[position] != 0xFF:
            # Stray bytes between segments: libjpeg skips to the next marker, and so does this walk.
            position = data.find(b"\xff", position)
            if position < 0:
                break
            continue
        while position + 1 < length and data[position + 1] == 0xFF:
            position += 1  # fill bytes before a marker
        if position + 1 >= length:
            break
        marker = data[position + 1]
        if marker == 0xD9:
            return data  # complete; whatever follows the end marker is ignored by every decoder
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        segment_end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if position + 4 > length or segment_end > length:
            # Cut inside a marker segment: end the file before it, after the scans that arrived whole.
            return data[:position] + _JPEG_EOI if seen_scan else data
        position = segment_end
        if marker == _JPEG_SOS:
            seen_scan = True
            next_marker = _JPEG_MARKER_AFTER_SCAN.search(data, position)
            if next_marker is None:
                break  # cut inside the scan's data
            position = next_marker.start()
    return data + _JPEG_EOI if seen_scan else data


def _viewed_png(data: bytes) -> bytes:
    """The PNG made of the chunks a viewer uses, ending in ``IEND`` (unchanged when it is that already)."""
    length = len(data)
    position = _PNG_SIGNATURE_LENGTH
    kept: list[tuple[int, int]] = [(0, _PNG_SIGNATURE_LENGTH)]
    colour_type: int | None = None
    ended = changed = False
    chunks = 0
    while position + 8 <= length:
        chunks += 1
        if chunks > _PNG_MAX_CHUNKS:
            raise corrupt()
        size = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        end = position + 12 + size
        if not kind.isalpha() or size > 0x7FFF_FFFF:
            # Not a chunk: the file's end is damaged. A viewer stops here and shows what came before.
            changed = True
            break
        if end > length:
            # A chunk cut short: only image data is worth its remains (Pillow still refuses those, and
            # moderation then treats the file as an image it could not check).
            if kind in (b"IDAT", b"fdAT"):
                kept.append((position, length))
            changed = True
            break
        if kind == b"IHDR" and size >= 13:
            colour_type = data[position + 17]
        if _png_chunk_used(data, position, kind, size, colour_type):
            kept.append((position, end))
        else:
            changed = True
        position = end
        if kind == b"IEND":
            ended = True
            break
    if not ended:
        changed = True
    if not changed:
        return data
    mended = b"".join(data[start:end] for start, end in kept)
    return mended if ended else mended + _PNG_IEND


def _png_chunk_used(data: bytes, position: int, kind: bytes, size: int, colour_type: int | None) -> bool:
    """Whether a viewer uses this chunk: every critical one, and the ancillary chunks that change the
    picture when they are well formed."""
    if not kind[0] & 0x20:  # an upper-case first letter: critical
        return True
    if kind not in _PNG_KEPT_ANCILLARY:
        return False
    if kind == b"tRNS" and size < _PNG_TRNS_MIN_LENGTH.get(colour_type if colour_type is not None else -1, 0):
        return False
    if kind in _PNG_CRC_CHECKED:
        stored = int.from_bytes(data[position + 8 + size : position + 12 + size], "big")
        return zlib.crc32(data[position + 4 : position + 8 + size]) == stored
    return True
