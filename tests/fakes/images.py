"""Test images: real photos shipped inside installed packages, and hostile files built on the spot."""

from __future__ import annotations

import importlib.util
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# (package, path inside the package) of real photographs that ship with libraries in the dev venv.
_PACKAGE_PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "bus": ("ultralytics", "assets/bus.jpg"),
    "zidane": ("ultralytics", "assets/zidane.jpg"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}
PHOTO_NAMES = tuple(_PACKAGE_PHOTOS)


def photo_path(name: str) -> Path | None:
    """Where a package photo lives, found without importing the package (ultralytics is slow to import)."""
    package, relative = _PACKAGE_PHOTOS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


def photo_bytes(name: str) -> bytes | None:
    path = photo_path(name)
    return path.read_bytes() if path is not None else None


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def gradient(width: int = 96, height: int = 64) -> Image.Image:
    """A small RGB picture with structure in both directions (so orientation changes are visible)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack(
        [
            np.broadcast_to(x, (height, width)),
            np.broadcast_to(y, (height, width)),
            np.full((height, width), 64.0),
        ],
        axis=2,
    )
    return Image.fromarray(rgb.astype(np.uint8))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(
    width: int, height: int, *, bit_depth: int = 8, colour_type: int = 2, idat: bytes = b""
) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height``; the pixel data (``idat``) may be anything."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    body = _png_chunk(b"IHDR", header)
    body += _png_chunk(b"IDAT", idat or zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + body + _png_chunk(b"IEND", b"")


def png_of_empty_chunks(count: int) -> bytes:
    """A small valid PNG with ``count`` empty text chunks before its image data (12 bytes each)."""
    data = encode(gradient(), "PNG")
    first_idat = data.index(b"IDAT") - 4
    return data[:first_idat] + _png_chunk(b"tEXt", b"") * count + data[first_idat:]


def real_bilevel_png(width: int, height: int) -> bytes:
    """A complete, valid 1-bit PNG of the given size: all white, compressed row by row (tiny file)."""
    row = b"\x00" + b"\xff" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    return png_declaring(width, height, bit_depth=1, colour_type=0, idat=b"".join(parts))


def animated_gif(n_frames: int, size: tuple[int, int] = (64, 48)) -> bytes:
    frames = [
        Image.new("RGB", size, ((i * 7) % 256, (i * 13) % 256, (i * 29) % 256)) for i in range(n_frames)
    ]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=20, loop=0)


def cmyk_jpeg() -> bytes:
    return encode(gradient().convert("CMYK"), "JPEG", quality=90)


def png_16bit_grey() -> bytes:
    ramp = np.tile(np.linspace(0, 65535, 80, dtype=np.uint16), (40, 1))
    return encode(Image.fromarray(ramp), "PNG")


def palette_png_with_transparency() -> bytes:
    image = gradient().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(image, "PNG", transparency=0)


def rgba_png() -> bytes:
    rgba = gradient().convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 0))
    return encode(rgba, "PNG")


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """A 96x64 JPEG whose EXIF says 'rotate for display' (6 = 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(gradient(96, 64), "JPEG", quality=90, exif=exif.tobytes())


def large_jpeg(width: int, height: int) -> bytes:
    """A genuine grey-ramp JPEG of the given size, as a high-resolution camera would write (small file)."""
    ramp = Image.linear_gradient("L").resize((width, height), Image.Resampling.NEAREST)
    return encode(ramp, "JPEG", quality=30)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    data = bytearray(encode(gradient(), "JPEG", quality=50))
    start_of_frame = data.index(b"\xff\xc0")
    data[start_of_frame + 5 : start_of_frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def padded_to(data: bytes, total_bytes: int) -> bytes:
    """``data`` with zero bytes appended up to ``total_bytes``: still a valid image, as big as asked."""
    return data + bytes(max(0, total_bytes - len(data)))


SVG_TEXT = b"""<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect width="100" height="100"/></svg>
"""
HTML_TEXT = b"<!doctype html><html><body><img src='x.png'></body></html>"
PLAIN_TEXT = "just some text saved as photo.jpg — 안녕하세요\n".encode()


def gif_of_tiny_frames(total_bytes: int = 24_000_000) -> bytes:
    """A GIF made of about a million 1x1 frames: each is cheap, their count is the attack."""
    two = encode(Image.new("L", (1, 1), 0), "GIF", save_all=True, append_images=[Image.new("L", (1, 1), 255)])
    first_extension = two.index(b"\x21\xf9")
    frames = two[first_extension:-1]  # every block between the header and the trailer
    return two[:first_extension] + frames * (total_bytes // len(frames)) + b";"
