"""Perceptual hashes of images, to recognise re-posts of a picture a moderator already judged."""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

__all__ = ["hamming", "phash"]


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
