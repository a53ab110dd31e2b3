"""Training data for image classifiers: finding the images, checking them, splitting them, feeding Keras.

Two layouts are accepted. A folder with one sub-folder per class (``violence/``, ``safe/``...; files
directly in the folder are ignored), or a CSV file of ``path,label`` rows (a header row is optional;
relative paths are relative to the CSV file). Every image is decoded once up front with the same safe
decoder the bot uses, so a file the bot could not read is listed and left out before training starts
instead of failing an epoch half-way.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from inference.classifier.metadata import prepare_pixels
from inference.images import ImageLimits, ImageRejected, decode_image

__all__ = [
    "IMAGE_SUFFIXES",
    "DataError",
    "DataReport",
    "Example",
    "augmentation",
    "balanced_class_weights",
    "find_examples",
    "load_pixels",
    "make_dataset",
    "stratified_split",
    "validate_examples",
]

IMAGE_SUFFIXES: Final = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
# The bot looks at frames downscaled to this side before any model sees them; training does the same so
# that both resize from the same intermediate size.
_LIMITS: Final = ImageLimits(max_frames=1, max_bytes=100 * 1024 * 1024, max_pixels=100_000_000)
# Above this ratio between the largest and the smallest class, the report warns (class weights still
# compensate during training, but the rare class's validation numbers rest on few images).
_IMBALANCE_WARNING: Final = 3.0
# Decoded training images are kept in memory after the first epoch when they fit in this budget.
_CACHE_BUDGET_BYTES: Final = 1024 * 1024 * 1024


class DataError(ValueError):
    """The training data cannot be used as given; the message says what to change."""


@dataclass(frozen=True)
class Example:
    path: Path
    label: str


@dataclass(frozen=True)
class DataReport:
    classes: tuple[str, ...]
    counts: dict[str, int]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def imbalance(self) -> float:
        values = [count for count in self.counts.values() if count]
        return max(values) / min(values) if values else 0.0

    def lines(self) -> list[str]:
        """A human summary: images per class, the balance, what was skipped and why."""
        width = max((len(name) for name in self.classes), default=5)
        lines = [f"{self.total} images in {len(self.classes)} classes:"]
        for name in self.classes:
            count = self.counts.get(name, 0)
            share = count / self.total if self.total else 0.0
            lines.append(f"  {name:<{width}}  {count:>6}  {share:6.1%}")
        lines.append(f"balance: largest/smallest class = {self.imbalance:.2f}")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable file(s):")
            lines.extend(f"  {path}: {reason}" for path, reason in self.skipped[:50])
            if len(self.skipped) > 50:
                lines.append(f"  ... and {len(self.skipped) - 50} more")
        lines.extend(f"warning: {warning}" for warning in self.warnings)
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "counts": dict(self.counts),
            "imbalance": round(self.imbalance, 3),
            "skipped": [{"path": str(path), "reason": reason} for path, reason in self.skipped],
            "warnings": list(self.warnings),
        }


def find_examples(source: Path) -> list[Example]:
    """Every (image path, label) of a class-per-folder tree or a ``path,label`` CSV file."""
    if source.is_dir():
        return _from_folders(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return _from_csv(source)
    if not source.exists():
        raise DataError(f"{str(source)!r} does not exist")
    raise DataError(f"{str(source)!r} is neither a folder of class folders nor a .csv file of path,label")


def _from_folders(root: Path) -> list[Example]:
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{str(root)!r} has no class folders: put each class's images in its own sub-folder")
    examples = []
    for class_dir in class_dirs:
        for path in sorted(class_dir.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                examples.append(Example(path, class_dir.name))
    return examples


def _from_csv(path: Path) -> list[Example]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read {str(path)!r}: {error}") from None
    if rows and [cell.strip().lower() for cell in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    examples = []
    for number, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"{str(path)!r} row {number}: expected path,label (got {row!r})")
        image = Path(row[0].strip())
        examples.append(Example(image if image.is_absolute() else path.parent / image, row[1].strip()))
    return examples


def validate_examples(
    examples: Sequence[Example], *, min_per_class: int = 10, min_classes: int = 2, workers: int = 4
) -> tuple[list[Example], DataReport]:
    """Drop unreadable images (listed in the report) and check there is enough left of every class."""
    if not examples:
        raise DataError("no images found")
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="lumi-check-image") as pool:
        problems = list(pool.map(_problem, [example.path for example in examples]))
    readable = [example for example, problem in zip(examples, problems, strict=True) if problem is None]
    skipped = [
        (example.path, problem) for example, problem in zip(examples, problems, strict=True) if problem
    ]
    classes = tuple(sorted({example.label for example in examples}))
    counts = Counter(example.label for example in readable)
    report = DataReport(
        classes=classes, counts={name: counts.get(name, 0) for name in classes}, skipped=skipped
    )
    if len(classes) < min_classes:
        raise DataError(
            f"at least {min_classes} classes are needed, found {len(classes)}: {', '.join(classes) or 'none'}"
        )
    short = [f"{name} ({report.counts[name]})" for name in classes if report.counts[name] < min_per_class]
    if short:
        raise DataError(
            f"every class needs at least {min_per_class} readable images; too few in: {', '.join(short)}"
        )
    if report.imbalance > _IMBALANCE_WARNING:
        report.warnings.append(
            f"classes are unbalanced ({report.imbalance:.1f}x); training weights the rare classes up, "
            "but more images of them would help"
        )
    return readable, report


def _problem(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError as error:
        return f"cannot read the file ({error.strerror or error})"
    try:
        decode_image(data, limits=_LIMITS)
    except ImageRejected as rejected:
        return rejected.message
    except Exception as error:
        return f"cannot decode ({type(error).__name__}: {error})"
    return None


def stratified_split(
    examples: Sequence[Example], *, validation_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(train, validation) with every class represented in both, in proportion."""
    if not 0.0 < validation_fraction < 1.0:
        raise DataError("the validation fraction must be between 0 and 1")
    rng = random.Random(seed)
    by_class: dict[str, list[Example]] = {}
    for example in examples:
        by_class.setdefault(example.label, []).append(example)
    train: list[Example] = []
    validation: list[Example] = []
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda example: str(example.path))
        rng.shuffle(members)
        count = min(len(members) - 1, max(1, round(len(members) * validation_fraction)))
        validation.extend(members[:count])
        train.extend(members[count:])
    rng.shuffle(train)
    return train, validation


def balanced_class_weights(labels: Iterable[int], n_classes: int) -> dict[int, float]:
    """Weights that make every class count as much as the others in the loss (1.0 when balanced)."""
    counts = Counter(labels)
    total = sum(counts.values())
    return {
        index: total / (n_classes * counts[index]) if counts[index] else 1.0 for index in range(n_classes)
    }


def load_pixels(path: Path, input_size: tuple[int, int]) -> NDArray[np.uint8]:
    """An image file as the classifier sees it: safely decoded, first frame, RGB, resized."""
    decoded = decode_image(path.read_bytes(), limits=_LIMITS)
    return prepare_pixels(decoded.frames[0], input_size)


def augmentation(keras: Any, *, seed: int) -> Any:
    """Random changes that keep an image's class: mirror, small turns, zoom, contrast and brightness.

    Only horizontal mirroring: upside-down photos are not what people post, and text would read wrong.
    """
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomZoom((-0.1, 0.1), fill_mode="reflect", seed=seed + 2),
            keras.layers.RandomContrast(0.15, value_range=(0, 255), seed=seed + 3),
            keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 4),
        ],
        name="augmentation",
    )


def make_dataset(
    tf: Any,
    examples: Sequence[Example],
    class_index: dict[str, int],
    *,
    input_size: tuple[int, int],
    batch_size: int,
    training: bool,
    augment: Any = None,
    seed: int = 0,
) -> Any:
    """A batched ``tf.data`` pipeline of (float32 0-255 pixels, class index).

    Decoding runs in parallel through the bot's own decoder; decoded images are cached in memory when they
    fit the budget. Training data is reshuffled every epoch and, with ``augment``, randomly altered after
    the cache so every epoch sees new variations.
    """
    height, width = input_size
    paths = [str(example.path) for example in examples]
    labels = np.array([class_index[example.label] for example in examples], dtype=np.int32)

    def load(path: Any) -> NDArray[np.uint8]:
        return load_pixels(Path(path.decode() if isinstance(path, bytes) else str(path)), input_size)

    def decode(path: Any, label: Any) -> tuple[Any, Any]:
        pixels = tf.numpy_function(load, [path], tf.uint8, stateful=False)
        return tf.ensure_shape(pixels, (height, width, 3)), label

    def finish(images: Any, labels: Any) -> tuple[Any, Any]:
        images = tf.cast(images, tf.float32)
        if training and augment is not None:
            images = augment(images, training=True)
        return images, labels

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if len(examples) * height * width * 3 <= _CACHE_BUDGET_BYTES:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
