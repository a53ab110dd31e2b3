"""Safe decoding of untrusted image bytes into RGB frames ready for the models.

Everything that can be checked from the header (byte size, declared pixel count, frame count) is
checked before any pixel data is decoded, so a decompression bomb costs a header parse, not memory.
A damaged file is first mended into what a viewer shows of it (``inference.images.repair``: a JPEG
without its end, a PNG with broken metadata chunks); a rejection names the format the bytes start
like, since a viewer may show part of a file Lumi cannot decode.
Decoding is synchronous and meant for worker threads; ``decode_image_async`` moves it off the loop.
The caps and rejections are in ``inference.images.limits``, format detection in ``inference.images.formats``
and frame conversion in ``inference.images.frames``.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from functools import partial

from PIL import Image

from inference.images.formats import (
    ANIMATED_FORMATS,
    frame_count,
    gif_frame_count,
    image_signature,
    open_image,
    sniff_rejection,
)
from inference.images.frames import (
    DRAFT_FORMATS,
    exif_orientation,
    keeps_full_size,
    prepare_frame,
    request_draft,
)
from inference.images.limits import (
    ImageLimits,
    ImageRejected,
    animation_too_large,
    check_size,
    corrupt,
    too_many_pixels,
)
from inference.images.repair import mend_for_viewing

__all__ = [
    "DecodedImage",
    "decode_image",
    "decode_image_async",
    "decodes_alike",
    "sample_frame_indices",
]


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


def decodes_alike(decoded: DecodedImage, decoded_under: ImageLimits, limits: ImageLimits) -> bool:
    """Whether decoding the bytes of ``decoded`` (decoded under ``decoded_under``) under ``limits`` gives
    the same frames: the same caps, or caps that differ only in scale while neither scale shrinks this
    image (its frames are at full size, and would be under ``limits`` too)."""
    if limits == decoded_under:
        return True
    same_caps = replace(
        limits,
        max_side_for_models=decoded_under.max_side_for_models,
        least_sides_for_models=decoded_under.least_sides_for_models,
    )
    if same_caps != decoded_under:
        return False
    full_size = (decoded.width, decoded.height)
    return all(frame.size == full_size for frame in decoded.frames) and keeps_full_size(
        decoded.width, decoded.height, limits
    )


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


def _check_declared_size(image: Image.Image, limits: ImageLimits) -> None:
    """The header's size, before anything is decoded; a JPEG's own cap is checked again once drafted."""
    drafts = image.format in DRAFT_FORMATS
    check_size(image.size, limits, max_pixels=limits.max_jpeg_declared_pixels if drafts else None)


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
        check_size(image.size, limits)
        decoded_pixels += image.width * image.height
        if decoded_pixels > limits.max_animation_pixels:
            raise animation_too_large(image.size)
        if index in wanted:
            frames.append(prepare_frame(image, orientation, limits))
    return frames


def decode_image(data: bytes, *, limits: ImageLimits | None = None) -> DecodedImage:
    """Decode untrusted bytes into sampled RGB frames, or raise ``ImageRejected``. Blocking.

    A rejection's ``image_format`` names the format the bytes start like (None: no image format).
    """
    limits = limits or ImageLimits()
    if not data:
        raise ImageRejected("empty", "The file is empty.")
    signature = image_signature(data)
    try:
        if len(data) > limits.max_bytes:
            raise ImageRejected(
                "too_large", f"This file is larger than the {limits.max_bytes // (1024 * 1024)} MB limit."
            )
        rejection = sniff_rejection(data)
        if rejection is not None:
            raise rejection
        return _decode(mend_for_viewing(data, signature), limits)
    except ImageRejected as rejected:
        if rejected.image_format is None:
            rejected.image_format = signature
        raise


def _decode(data: bytes, limits: ImageLimits) -> DecodedImage:
    with open_image(data) as image:
        _check_declared_size(image, limits)
        image_format = image.format or "UNKNOWN"
        if (
            image_format == "GIF"
            and gif_frame_count(data, limits.max_animation_frames) > limits.max_animation_frames
        ):
            raise animation_too_large(image.size)
        n_total = frame_count(image)
        animated = n_total > 1 and image_format in ANIMATED_FORMATS
        if animated and n_total > limits.max_animation_frames:
            raise animation_too_large(image.size)
        if n_total * image.width * image.height > limits.max_animation_pixels and animated:
            # Cheap early exit for the common case of a uniformly sized animation.
            raise animation_too_large(image.size)
        orientation = exif_orientation(image)
        width, height = image.size
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        indices = sample_frame_indices(n_total, limits.max_frames) if animated else [0]
        try:
            if not animated:
                request_draft(image, limits)
            frames = _decode_frames(image, indices, orientation, limits)
        except Image.DecompressionBombError as exc:
            raise too_many_pixels(image.size) from exc
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, MemoryError) as exc:
            raise corrupt() from exc
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
