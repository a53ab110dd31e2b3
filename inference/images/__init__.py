"""Image decoding for the models: untrusted bytes decoded safely (limits, formats, frames), and
perceptual hashes.
"""

from __future__ import annotations

from inference.images.decode import (
    DecodedImage,
    decode_image,
    decode_image_async,
    decodes_alike,
    sample_frame_indices,
)
from inference.images.limits import SIZE_REASON_CODES, ImageLimits, ImageRejected
from inference.images.perceptual_hash import hamming, phash

__all__ = [
    "SIZE_REASON_CODES",
    "DecodedImage",
    "ImageLimits",
    "ImageRejected",
    "decode_image",
    "decode_image_async",
    "decodes_alike",
    "hamming",
    "phash",
    "sample_frame_indices",
]
