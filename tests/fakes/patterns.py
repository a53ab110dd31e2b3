"""Synthetic image classes for classifier tests: stripes and dots, easy to tell apart, never identical.

Each picture gets its own colours, stripe angle and width, or dot sizes and positions, so a model has to
learn the pattern, not memorise pixels.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["dots", "png_bytes", "stripes", "train_pattern_classifier", "write_csv", "write_pattern_folders"]


def _colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    background = tuple(int(value) for value in rng.integers(0, 90, 3))
    foreground = tuple(int(value) for value in rng.integers(165, 256, 3))
    return background, foreground  # type: ignore[return-value]


def stripes(rng: np.random.Generator, size: int = 64) -> Image.Image:
    background, foreground = _colours(rng)
    period = int(rng.integers(6, 12))
    angle = float(rng.uniform(0, np.pi))
    y, x = np.mgrid[0:size, 0:size]
    phase = (x * np.cos(angle) + y * np.sin(angle)) % period
    mask = phase < period / 2
    pixels = np.where(mask[..., None], np.array(foreground), np.array(background)).astype(np.uint8)
    return Image.fromarray(pixels)


def dots(rng: np.random.Generator, size: int = 64) -> Image.Image:
    background, foreground = _colours(rng)
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(8, 16))):
        radius = int(rng.integers(2, 5))
        cx, cy = (int(value) for value in rng.integers(0, size, 2))
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=foreground)
    return image


def write_pattern_folders(root: Path, *, per_class: int = 24, size: int = 64, seed: int = 0) -> Path:
    """``root/stripes/*.png`` and ``root/dots/*.png``; returns ``root``."""
    rng = np.random.default_rng(seed)
    for name, draw in (("stripes", stripes), ("dots", dots)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            draw(rng, size).save(folder / f"{name}_{index:03d}.png")
    return root


def write_csv(root: Path, csv_path: Path) -> Path:
    """A path,label CSV (with header, relative paths) of every image under ``root``'s class folders."""
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for image in sorted(root.glob("*/*.png")):
            writer.writerow([image.relative_to(csv_path.parent).as_posix(), image.parent.name])
    return csv_path


def png_bytes(kind: str, *, seed: int, size: int = 64) -> bytes:
    """One stripes or dots picture as PNG bytes, e.g. to post in a test."""
    import io

    draw = {"stripes": stripes, "dots": dots}[kind]
    buffer = io.BytesIO()
    draw(np.random.default_rng(seed), size).save(buffer, format="PNG")
    return buffer.getvalue()


def train_pattern_classifier(workdir: Path) -> Path:
    """Train the small CNN to flag stripes (dots are the harmless class); returns the classifier folder.

    Enough images and epochs that stripes score close to 1, so tests downstream do not depend on luck.
    """
    import io

    from inference.classifier.train import train_classifier
    from inference.classifier.train_config import TrainConfig

    data = write_pattern_folders(workdir / "data", per_class=64, seed=7)
    result = train_classifier(
        TrainConfig(
            data=data,
            out_dir=workdir / "classifier",
            backbone="small",
            image_size=64,
            epochs=4,
            batch_size=8,
            positive_class="stripes",
            augment=False,
            device="cpu",
            seed=3,
        ),
        out=io.StringIO(),
    )
    if result.evaluation.accuracy < 0.9:
        raise RuntimeError(f"the pattern classifier did not learn (accuracy {result.evaluation.accuracy})")
    return result.out_dir
