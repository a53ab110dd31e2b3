"""Safe decoding of untrusted image bytes into RGB frames ready for the models.

Everything that can be checked from the header (byte size, declared pixel count, frame count) is
checked before any pixel data is decoded, so a decompression bomb costs a header parse, not memory.
Decoding is synchronous and meant for worker threads; ``decode_image_async`` moves it off the loop.
"""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

__all__ = [
    "SIZE_REASON_CODES",
    "DecodedImage",
    "ImageLimits",
    "ImageRejected",
    "decode_image",
    "decode_image_async",
    "hamming",
    "heif_supported",
    "phash",
    "sample_frame_indices",
    "to_rgb",
]


@dataclass(frozen=True)
class ImageLimits:
    """Caps applied to every untrusted image.

    ``max_frames`` is the total number of frames sampled from an animation (first, middle and last
    always, the rest evenly spaced). ``max_animation_pixels`` bounds the work of reaching those frames:
    GIF, WebP and APNG frames are deltas, so reaching the last frame means decoding every frame before
    it (Pillow does roughly 75 MP/s on one core, so the default bounds that to about 1.5 s).
    ``max_animation_frames`` bounds the per-frame overhead of very long animations of tiny frames.
    ``max_side_for_models`` downscales frames because the models look at 224-320 px inputs; ``None``
    keeps full resolution.

    ``max_pixels`` caps the pixels actually decoded. A JPEG decodes at 1/2, 1/4 or 1/8 scale, so a larger
    one is checked at a reduced size; ``max_jpeg_declared_pixels`` still bounds what its header may
    claim. Even at 1/8 scale every coefficient is read, and a progressive JPEG buffers all of them
    (about 2 bytes a sample, 3 samples per 2 pixels with 4:2:0 chroma: ~360 MB at 120 MP, per decoding
    thread). 120 MP admits the 108 MP (12000x9000) photos of phone cameras; 200 MP sensors write files
    beyond the 25 MB byte cap anyway, and a header claiming 65535x65535 is refused before any decoding.
    """

    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_jpeg_declared_pixels: int = 120_000_000
    max_frames: int = 7
    max_animation_frames: int = 2000
    max_animation_pixels: int = 120_000_000
    max_side_for_models: int | None = 640

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0 or self.max_animation_pixels <= 0:
            raise ValueError("image limits must be positive")
        if self.max_jpeg_declared_pixels < self.max_pixels:
            raise ValueError("max_jpeg_declared_pixels must be at least max_pixels")
        if self.max_frames < 1 or self.max_animation_frames < 1:
            raise ValueError("max_frames must be at least 1")
        if self.max_side_for_models is not None and self.max_side_for_models < 16:
            raise ValueError("max_side_for_models must be at least 16 (or None)")


class ImageRejected(Exception):
    """The bytes are not an image this bot will look at. ``message`` is safe to show to users.

    ``size`` is the width and height the file declares, where the header was read before rejecting it.
    """

    def __init__(self, reason_code: str, message: str, *, size: tuple[int, int] | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message
        self.size = size

    @property
    def too_large_to_check(self) -> bool:
        """A real image, refused only for its size: people may well see it (unlike a corrupt file)."""
        return self.reason_code in SIZE_REASON_CODES

    def __repr__(self) -> str:
        return f"ImageRejected({self.reason_code!r}, {self.message!r})"


@dataclass(frozen=True)
class DecodedImage:
    """RGB frames of one image. ``width``/``height`` are the original size after EXIF orientation."""

    frames: list[Image.Image]
    format: str
    width: int
    height: int
    n_frames_total: int
    animated: bool
    frame_indices: list[int] = field(default_factory=lambda: [0])

    @property
    def pixels(self) -> int:
        return self.width * self.height


# Formats Discord users actually post. Restricting Image.open to these keeps exotic, rarely audited
# decoders (EPS runs Ghostscript, PSD, FITS, ...) away from untrusted input.
_BASE_FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO")
# Only these formats show more than their first frame in a Discord client; a TIFF page or an MPO depth
# map nobody sees is not worth the decode time.
_ANIMATED_FORMATS: Final = frozenset({"GIF", "WEBP", "PNG"})
_HEIF_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})
# Transparent pixels are shown on Discord's dark and light themes alike; mid grey keeps both dark and
# light strokes of a transparent image visible to the models.
_ALPHA_BACKGROUND: Final = (128, 128, 128)
# EXIF orientation tag value -> the transpose that undoes it.
_ORIENTATION_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION_TAG: Final = 0x0112
# Formats whose decoder can reduce the scale while decoding (Pillow's ``draft``).
_DRAFT_FORMATS: Final = frozenset({"JPEG", "MPO"})
_DRAFT_REDUCTIONS: Final = (1, 2, 4, 8)
# Rejections for size alone: the bytes are an image, only too big to decode here.
SIZE_REASON_CODES: Final = frozenset({"too_large", "too_many_pixels", "animation_too_large"})


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


def _sniff_rejection(data: bytes) -> ImageRejected | None:
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


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=_allowed_formats())
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels() from exc
    except UnidentifiedImageError as exc:
        if _looks_like_text(data):
            raise ImageRejected("not_an_image", "This file is text, not an image.") from exc
        raise ImageRejected(
            "not_an_image", "This file is not an image in a supported format (JPEG, PNG, GIF, WebP)."
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        raise _corrupt() from exc


def _too_many_pixels(size: tuple[int, int] | None = None) -> ImageRejected:
    return ImageRejected("too_many_pixels", "This image's dimensions are too large to check.", size=size)


def _animation_too_large(size: tuple[int, int] | None = None) -> ImageRejected:
    return ImageRejected(
        "animation_too_large", "This animation is too long or too large to check.", size=size
    )


def _corrupt() -> ImageRejected:
    return ImageRejected("corrupt", "This image is damaged or incomplete and can't be read.")


def sample_frame_indices(n_frames: int, max_frames: int) -> list[int]:
    """First, middle and last frame plus evenly spaced ones in between, at most ``max_frames`` in total.

    An odd count of evenly spaced points always contains the middle, so an even ``max_frames`` gives
    one frame fewer rather than an unevenly spaced set.
    """
    if n_frames <= 0:
        return []
    if n_frames <= max_frames:
        return list(range(n_frames))
    last = n_frames - 1
    if max_frames < 3:
        return [0, last][:max_frames]
    count = max_frames if max_frames % 2 else max_frames - 1
    return sorted({round(i * last / (count - 1)) for i in range(count)})


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:
        # Broken EXIF must not make an otherwise readable image unreadable.
        return 1
    return value if isinstance(value, int) else 1


def _uint16_to_l(array: NDArray[np.integer]) -> Image.Image:
    scaled = (np.clip(array.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
    return Image.fromarray(scaled)


def to_rgb(image: Image.Image) -> Image.Image:
    """A new RGB image from any Pillow mode: alpha is composited on grey, high bit depths scaled."""
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode.startswith("I;16"):
        return _uint16_to_l(np.asarray(image)).convert("RGB")
    if mode == "I":
        array = np.asarray(image)
        # 32-bit integer images from PNG/TIFF almost always carry 16-bit samples.
        if array.size and int(array.max()) > 255:
            return _uint16_to_l(array).convert("RGB")
        return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        finite = np.nan_to_num(array)
        low, high = float(finite.min(initial=0.0)), float(finite.max(initial=0.0))
        span = high - low if high > low else 1.0
        return Image.fromarray(((finite - low) / span * 255.0).astype(np.uint8)).convert("RGB")
    if (mode == "P" and "transparency" in image.info) or mode in ("PA", "LA", "La", "RGBa"):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        background = Image.new("RGB", image.size, _ALPHA_BACKGROUND)
        background.paste(image.convert("RGB"), mask=image.getchannel("A"))
        return background
    if mode == "1":
        return image.convert("L").convert("RGB")
    return image.convert("RGB")


def _fit(image: Image.Image, max_side: int | None) -> Image.Image:
    if max_side is None or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # reducing_gap lets Pillow shrink by an integer factor first: much faster than a full-size filter.
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _prepare_frame(image: Image.Image, orientation: int, max_side: int | None) -> Image.Image:
    frame = _fit(to_rgb(image), max_side)
    transpose = _ORIENTATION_TRANSPOSE.get(orientation)
    return frame.transpose(transpose) if transpose is not None else frame


def _draft_reduction(width: int, height: int, limits: ImageLimits) -> int:
    """How far a JPEG decodes reduced: at most as far as keeps the models' input size, and at least as
    far as brings the decoded pixels within ``max_pixels``."""
    max_side = limits.max_side_for_models
    for_models = max(
        (r for r in _DRAFT_REDUCTIONS if max_side is not None and max(width, height) // r > max_side),
        default=1,
    )
    within_cap = next(
        (r for r in _DRAFT_REDUCTIONS if -(-width // r) * -(-height // r) <= limits.max_pixels),
        _DRAFT_REDUCTIONS[-1],
    )
    return max(for_models, within_cap)


def _request_draft(image: Image.Image, limits: ImageLimits) -> None:
    """Let JPEG decode at 1/2, 1/4 or 1/8 scale when the models need fewer pixels or the cap asks it."""
    if image.format not in _DRAFT_FORMATS:
        return
    reduction = _draft_reduction(image.width, image.height, limits)
    if reduction > 1:
        # Pillow picks the largest reduction that still gives at least the size asked for.
        image.draft(None, (max(1, image.width // reduction), max(1, image.height // reduction)))


def _check_size(size: tuple[int, int], limits: ImageLimits, *, max_pixels: int | None = None) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise _corrupt()
    if width * height > (max_pixels or limits.max_pixels):
        raise _too_many_pixels(size)


def _check_declared_size(image: Image.Image, limits: ImageLimits) -> None:
    """The header's size, before anything is decoded; a JPEG's own cap is checked again once drafted."""
    drafts = image.format in _DRAFT_FORMATS
    _check_size(image.size, limits, max_pixels=limits.max_jpeg_declared_pixels if drafts else None)


def _gif_frame_count(data: bytes, limit: int) -> int:
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


def _frame_count(image: Image.Image) -> int:
    try:
        return max(1, int(getattr(image, "n_frames", 1)))
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        raise _corrupt() from exc


def _decode_frames(
    image: Image.Image, indices: Sequence[int], orientation: int, limits: ImageLimits
) -> list[Image.Image]:
    frames: list[Image.Image] = []
    wanted = set(indices)
    decoded_pixels = 0
    for index in range(max(indices) + 1):
        if index:
            # Seeking one frame at a time lets each frame's size be checked before it is decoded
            # (a GIF frame may declare itself larger than the logical screen).
            image.seek(index)
        _check_size(image.size, limits)
        decoded_pixels += image.width * image.height
        if decoded_pixels > limits.max_animation_pixels:
            raise _animation_too_large(image.size)
        if index in wanted:
            frames.append(_prepare_frame(image, orientation, limits.max_side_for_models))
    return frames


def decode_image(data: bytes, *, limits: ImageLimits | None = None) -> DecodedImage:
    """Decode untrusted bytes into sampled RGB frames, or raise ``ImageRejected``. Blocking."""
    limits = limits or ImageLimits()
    if not data:
        raise ImageRejected("empty", "The file is empty.")
    if len(data) > limits.max_bytes:
        raise ImageRejected(
            "too_large", f"This file is larger than the {limits.max_bytes // (1024 * 1024)} MB limit."
        )
    rejection = _sniff_rejection(data)
    if rejection is not None:
        raise rejection

    with _open(data) as image:
        _check_declared_size(image, limits)
        image_format = image.format or "UNKNOWN"
        if (
            image_format == "GIF"
            and _gif_frame_count(data, limits.max_animation_frames) > limits.max_animation_frames
        ):
            raise _animation_too_large(image.size)
        n_total = _frame_count(image)
        animated = n_total > 1 and image_format in _ANIMATED_FORMATS
        if animated and n_total > limits.max_animation_frames:
            raise _animation_too_large(image.size)
        if n_total * image.width * image.height > limits.max_animation_pixels and animated:
            # Cheap early exit for the common case of a uniformly sized animation.
            raise _animation_too_large(image.size)
        orientation = _orientation(image)
        width, height = image.size
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        indices = sample_frame_indices(n_total, limits.max_frames) if animated else [0]
        try:
            if not animated:
                _request_draft(image, limits)
            frames = _decode_frames(image, indices, orientation, limits)
        except Image.DecompressionBombError as exc:
            raise _too_many_pixels(image.size) from exc
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, MemoryError) as exc:
            raise _corrupt() from exc
    return DecodedImage(
        frames=frames,
        format=image_format,
        width=width,
        height=height,
        n_frames_total=n_total,
        animated=animated,
        frame_indices=list(indices),
    )


async def decode_image_async(
    data: bytes, *, limits: ImageLimits | None = None, executor: Executor | None = None
) -> DecodedImage:
    """``decode_image`` in a worker thread (the default pool unless ``executor`` is given)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, partial(decode_image, data, limits=limits))


def _dct_matrix(size: int) -> NDArray[np.float64]:
    k = np.arange(size)[:, None]
    n = np.arange(size)[None, :]
    matrix = np.cos(np.pi * (2 * n + 1) * k / (2 * size)) * np.sqrt(2.0 / size)
    matrix[0, :] = np.sqrt(1.0 / size)
    return np.asarray(matrix, dtype=np.float64)


_DCT_32: Final = _dct_matrix(32)


def phash(image: Image.Image | NDArray[np.uint8]) -> str:
    """64-bit perceptual hash (DCT of a 32x32 grey thumbnail, low 8x8 band vs its median), as 16 hex."""
    pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    grey = pil.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    low_band = (_DCT_32 @ pixels @ _DCT_32.T)[:8, :8].ravel()
    bits = low_band > np.median(low_band)
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hex hashes (0 = same picture, <= ~8 = near-identical)."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
