"""Turning Pillow frames into the RGB frames the models see.

Covers reduced-scale JPEG decoding, conversion of any Pillow mode to RGB (alpha composited on grey,
high bit depths scaled), downscaling towards the models' input size and undoing EXIF orientation.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from inference.images.limits import ImageLimits

__all__ = ["keeps_full_size", "to_rgb", "whole_reduction"]

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
DRAFT_FORMATS: Final = frozenset({"JPEG", "MPO"})
_DRAFT_REDUCTIONS: Final = (1, 2, 4, 8)


def exif_orientation(image: Image.Image) -> int:
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


def whole_reduction(width: int, height: int, least_sides: tuple[int, int] | None) -> int:
    """The largest whole factor an image shrinks by and keeps ``least_sides`` (long, short); at least 1."""
    if least_sides is None:
        return 1
    least_long, least_short = least_sides
    return max(1, min(max(width, height) // least_long, min(width, height) // least_short))


def _reduced_rgb(image: Image.Image, least_sides: tuple[int, int] | None) -> Image.Image:
    """An RGB copy of ``image`` box-reduced by ``whole_reduction``: the cheapest shrink there is, which
    leaves each model one resize of its own from a frame less than twice its input."""
    factor = whole_reduction(image.width, image.height, least_sides)
    if factor == 1:
        return to_rgb(image)
    if image.mode in ("RGB", "L"):
        # Reduced before conversion: converting the full-size frame first would copy it for nothing.
        return to_rgb(image.reduce(factor))
    return to_rgb(image).reduce(factor)


def prepare_frame(image: Image.Image, orientation: int, limits: ImageLimits) -> Image.Image:
    frame = _fit(_reduced_rgb(image, limits.least_sides_for_models), limits.max_side_for_models)
    transpose = _ORIENTATION_TRANSPOSE.get(orientation)
    return frame.transpose(transpose) if transpose is not None else frame


def _keeps_sides(width: int, height: int, reduction: int, limits: ImageLimits) -> bool:
    """Whether a JPEG decoded at 1/``reduction`` scale still has the sides the models need."""
    long_side, short_side = -(-max(width, height) // reduction), -(-min(width, height) // reduction)
    if limits.least_sides_for_models is not None:
        least_long, least_short = limits.least_sides_for_models
        return long_side >= least_long and short_side >= least_short
    max_side = limits.max_side_for_models
    return max_side is not None and max(width, height) // reduction > max_side


def _draft_reduction(width: int, height: int, limits: ImageLimits) -> int:
    """How far a JPEG decodes reduced: at most as far as keeps the models' input size, and at least as
    far as brings the decoded pixels within ``max_pixels``."""
    for_models = max((r for r in _DRAFT_REDUCTIONS if _keeps_sides(width, height, r, limits)), default=1)
    within_cap = next(
        (r for r in _DRAFT_REDUCTIONS if -(-width // r) * -(-height // r) <= limits.max_pixels),
        _DRAFT_REDUCTIONS[-1],
    )
    return max(for_models, within_cap)


def keeps_full_size(width: int, height: int, limits: ImageLimits) -> bool:
    """Whether an image of this (oriented) size is decoded at full size under ``limits``: no reduced-scale
    JPEG decoding, no whole-factor reduction and no downscaling to a fixed side."""
    if limits.max_side_for_models is not None and max(width, height) > limits.max_side_for_models:
        return False
    if whole_reduction(width, height, limits.least_sides_for_models) > 1:
        return False
    # Orientation swaps the sides, which changes neither rule above nor this one.
    return _draft_reduction(width, height, limits) == 1


def request_draft(image: Image.Image, limits: ImageLimits) -> None:
    """Let JPEG decode at 1/2, 1/4 or 1/8 scale when the models need fewer pixels or the cap asks it."""
    if image.format not in DRAFT_FORMATS:
        return
    reduction = _draft_reduction(image.width, image.height, limits)
    if reduction > 1:
        # Pillow picks the largest reduction that still gives at least the size asked for.
        image.draft(None, (max(1, image.width // reduction), max(1, image.height // reduction)))
