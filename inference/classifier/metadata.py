"""What a trained image classifier consists of, and the one preprocessing step training and serving share.

A classifier is a folder: ``model.keras`` (Keras 3 format) and ``metadata.json``. The metadata says which
classes the outputs stand for, which one is "positive" for moderation, the input size and how pixels are
prepared, and the threshold recommended on the validation split. Training writes it, the runner and
`lumi train evaluate` read it, and registering a classifier for moderation validates it first.

Normalisation (scaling, mean subtraction) lives inside the model, so everything outside it feeds plain RGB
pixels in [0, 255]. ``prepare_pixels`` is the only resize: the same function runs during training, in
evaluation and in the bot, so a model never sees images prepared differently from those it learned on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "MODEL_FILE",
    "PREPROCESSING",
    "ClassifierMetadata",
    "MetadataError",
    "classifier_files",
    "parse_metadata",
    "prepare_pixels",
    "read_metadata",
]

FORMAT_NAME: Final = "lumi-image-classifier"
FORMAT_VERSION: Final = 1
METADATA_FILE: Final = "metadata.json"
MODEL_FILE: Final = "model.keras"

# Written into every metadata file, so a model can be served by other code that never saw this module.
PREPROCESSING: Final[dict[str, Any]] = {
    "color": "RGB",
    "resize": "stretch to input_size (aspect ratio not kept, nothing cropped away)",
    "interpolation": "bilinear",
    "input_range": [0, 255],
    "dtype": "float32",
    "normalization": "inside the model",
    "frames": "first frame; the moderation pipeline scores every sampled frame and keeps the maximum",
}


class MetadataError(ValueError):
    """The folder is not a usable classifier; the message says what is wrong."""


@dataclass(frozen=True)
class ClassifierMetadata:
    classes: tuple[str, ...]
    positive_class: str
    input_size: tuple[int, int]
    backbone: str
    recommended_threshold: float
    model_file: str = MODEL_FILE
    metrics: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def positive_index(self) -> int:
        return self.classes.index(self.positive_class)


def classifier_files(path: Path) -> tuple[Path, Path]:
    """(model file, metadata file) of a classifier given as its folder or as its ``.keras`` file."""
    folder = path.parent if path.suffix == ".keras" else path
    metadata_path = folder / METADATA_FILE
    if not metadata_path.is_file():
        raise MetadataError(f"{str(folder)!r} has no {METADATA_FILE}: is it the output folder of training?")
    metadata = read_metadata(metadata_path)
    model_path = path if path.suffix == ".keras" else folder / metadata.model_file
    if not model_path.is_file():
        raise MetadataError(f"model file {str(model_path)!r} not found")
    return model_path, metadata_path


def read_metadata(path: Path) -> ClassifierMetadata:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise MetadataError(f"cannot read {str(path)!r}: {error}") from None
    except json.JSONDecodeError as error:
        raise MetadataError(f"{str(path)!r} is not valid JSON: {error.msg} (line {error.lineno})") from None
    return parse_metadata(raw, source=str(path))


def parse_metadata(raw: object, *, source: str = "metadata") -> ClassifierMetadata:
    if not isinstance(raw, Mapping):
        raise MetadataError(f"{source} must be a JSON object")
    if raw.get("format") != FORMAT_NAME:
        raise MetadataError(f"{source} is not a Lumi classifier (format {raw.get('format')!r})")
    version = raw.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise MetadataError(
            f"{source} has format version {version!r}; this Lumi reads up to {FORMAT_VERSION}"
        )
    classes = raw.get("classes")
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or not all(isinstance(name, str) and name for name in classes)
        or len(set(classes)) != len(classes)
    ):
        raise MetadataError(f"{source}: classes must be a list of at least two distinct names")
    positive = raw.get("positive_class")
    if positive not in classes:
        raise MetadataError(f"{source}: positive_class {positive!r} is not one of {classes}")
    size = raw.get("input_size")
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(side, int) and 16 <= side <= 4096 for side in size)
    ):
        raise MetadataError(f"{source}: input_size must be [height, width], each 16-4096 pixels")
    threshold = raw.get("recommended_threshold")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
        or not 0.0 <= threshold <= 1.0
    ):
        raise MetadataError(f"{source}: recommended_threshold must be a number between 0 and 1")
    model_file = raw.get("model_file", MODEL_FILE)
    if (
        not isinstance(model_file, str)
        or "/" in model_file
        or "\\" in model_file
        or model_file.startswith(".")
    ):
        raise MetadataError(f"{source}: model_file must be a file name inside the classifier folder")
    metrics = raw.get("metrics", {})
    return ClassifierMetadata(
        classes=tuple(classes),
        positive_class=str(positive),
        input_size=(size[0], size[1]),
        backbone=str(raw.get("backbone", "unknown")),
        recommended_threshold=float(threshold),
        model_file=model_file,
        metrics=metrics if isinstance(metrics, Mapping) else {},
        raw=raw,
    )


def prepare_pixels(image: Image.Image | NDArray[np.uint8], input_size: tuple[int, int]) -> NDArray[np.uint8]:
    """RGB uint8 array of shape (height, width, 3) for a classifier whose input is ``input_size``."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    if picture.mode != "RGB":
        picture = picture.convert("RGB")
    height, width = input_size
    if picture.size != (width, height):
        picture = picture.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(picture, dtype=np.uint8)
