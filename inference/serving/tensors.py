"""Checks and shapes shared by the codecs: required tensors, padded image batches, rows per item.

Whatever a peer sends is checked here before a model sees it, and every refusal is an ``OipError``
naming the tensor and what was wrong with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from inference.serving.oip import OipError, Tensors

__all__ = [
    "Tensors",
    "bytes_tensor",
    "pad_images",
    "require",
    "require_count",
    "rows_per_item",
    "unpad_images",
]


def require(tensors: Tensors, name: str, dtype: type[Any] | np.dtype[Any], rank: int) -> NDArray[Any]:
    """The tensor ``name`` with the given dtype and number of dimensions."""
    array = tensors.get(name)
    if array is None:
        raise OipError(f"tensor {name!r} is missing (got {', '.join(sorted(tensors)) or 'none'})")
    if array.dtype != np.dtype(dtype):
        raise OipError(f"tensor {name!r} must be {np.dtype(dtype)}, got {array.dtype}")
    if array.ndim != rank:
        raise OipError(f"tensor {name!r} must have {rank} dimensions, got shape {list(array.shape)}")
    return array


def require_count(name: str, array: NDArray[Any], count: int) -> None:
    if len(array) != count:
        raise OipError(f"tensor {name!r} has {len(array)} rows for {count} items")


def bytes_tensor(values: Sequence[bytes]) -> NDArray[Any]:
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def pad_images(items: Sequence[Image.Image | NDArray[np.uint8]]) -> Tensors:
    """RGB images of any sizes as one batch: ``IMAGES`` (n, max height, max width, 3) padded with black
    at the right and bottom, and ``SIZES`` (n, 2) giving each image's (height, width)."""
    arrays = [np.asarray(_rgb(item), dtype=np.uint8) for item in items]
    height = max((array.shape[0] for array in arrays), default=0)
    width = max((array.shape[1] for array in arrays), default=0)
    batch = np.zeros((len(arrays), height, width, 3), dtype=np.uint8)
    for index, array in enumerate(arrays):
        batch[index, : array.shape[0], : array.shape[1]] = array
    sizes = np.array([array.shape[:2] for array in arrays], dtype=np.int64).reshape(len(arrays), 2)
    return {"IMAGES": batch, "SIZES": sizes}


def unpad_images(tensors: Tensors) -> list[NDArray[np.uint8]]:
    """The images of a ``pad_images`` batch, each cut back to its own size."""
    images = require(tensors, "IMAGES", np.uint8, 4)
    sizes = require(tensors, "SIZES", np.int64, 2)
    require_count("SIZES", sizes, len(images))
    if images.shape[3] != 3:
        raise OipError(f"tensor 'IMAGES' must hold RGB pixels (last dimension 3), got {images.shape[3]}")
    if sizes.shape[1] != 2:
        raise OipError("tensor 'SIZES' must hold one (height, width) row per image")
    out: list[NDArray[np.uint8]] = []
    for index, (height, width) in enumerate(sizes.tolist()):
        if not (1 <= height <= images.shape[1] and 1 <= width <= images.shape[2]):
            batch = f"{images.shape[1]}x{images.shape[2]}"
            raise OipError(f"image {index}: size {height}x{width} does not fit the batch's {batch}")
        out.append(np.ascontiguousarray(images[index, :height, :width]))
    return out


def rows_per_item(counts_tensor: Tensors, count: int, *row_tensors: str) -> list[slice]:
    """Slices of the row tensors for each of ``count`` items, from the ``COUNTS`` tensor."""
    counts = require(counts_tensor, "COUNTS", np.int64, 1)
    require_count("COUNTS", counts, count)
    if (counts < 0).any():
        raise OipError("tensor 'COUNTS' holds a negative count")
    total = int(counts.sum())
    for name in row_tensors:
        array = counts_tensor.get(name)
        if array is None or array.ndim < 1 or len(array) != total:
            found = "missing" if array is None else f"{len(array) if array.ndim else 0} rows"
            raise OipError(f"tensor {name!r} must have {total} rows (the sum of COUNTS), it is {found}")
    ends = np.cumsum(counts).tolist()
    starts = [0, *ends[:-1]]
    return [slice(start, end) for start, end in zip(starts, ends, strict=True)]


def _rgb(item: Image.Image | NDArray[np.uint8]) -> Image.Image | NDArray[np.uint8]:
    if isinstance(item, Image.Image):
        return item if item.mode == "RGB" else item.convert("RGB")
    if item.ndim == 3 and item.shape[2] == 3:
        return item
    return Image.fromarray(item).convert("RGB")
