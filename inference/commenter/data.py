"""Label→comment pairs: loading, validation and a deterministic train/dev split.

The split is decided by a hash of each pair's content, not by its line number, so that adding,
removing or reordering lines never moves an existing pair from train to dev (or back), and identical
duplicate pairs always land on the same side (no leakage of exact copies into the dev set).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Emotion words that the face model produces; every other label is an object name. Comments rarely
# repeat emotion words literally ("기쁨" is written as "기쁜 표정"), so label coverage counts objects only.
EMOTION_LABELS: frozenset[str] = frozenset({"기쁨", "슬픔", "분노", "공포"})
# The order in which the training data always lists emotions (before any object).
_EMOTION_ORDER = {"기쁨": 0, "슬픔": 1, "공포": 2, "분노": 3}

# A photo rarely yields more useful labels than this; longer lists are cut (most confident first).
MAX_LABELS = 8
MAX_LABEL_CHARS = 40


class CommenterInputError(ValueError):
    """A label list that cannot be turned into a comment; the message is safe to show to users."""


@dataclass(frozen=True)
class CommentPair:
    labels: tuple[str, ...]
    comment: str

    @property
    def pair_id(self) -> str:
        """Stable content id: the split and the saved dev manifest refer to pairs by it."""
        canonical = json.dumps({"labels": list(self.labels), "comment": self.comment}, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Split:
    train: list[CommentPair]
    dev: list[CommentPair]


def normalize_labels(labels: Sequence[str], *, max_labels: int = MAX_LABELS) -> tuple[str, ...]:
    """Clean a label list for the model, or raise `CommenterInputError` with a readable reason.

    Blank labels and exact repeats are dropped (a detector may report the same class twice), long
    labels are cut, and lists longer than `max_labels` keep their first entries.
    """
    if isinstance(labels, str):
        raise CommenterInputError("labels must be a list of strings, not one string")
    cleaned: list[str] = []
    for label in labels:
        if not isinstance(label, str):
            raise CommenterInputError(f"every label must be a string, got {type(label).__name__}")
        text = " ".join(label.split())[:MAX_LABEL_CHARS]
        if text and text not in cleaned:
            cleaned.append(text)
    if not cleaned:
        raise CommenterInputError("at least one non-blank label is needed to write a comment")
    return tuple(cleaned[:max_labels])


def object_labels(labels: Iterable[str]) -> list[str]:
    return [label for label in labels if label not in EMOTION_LABELS]


def prompt_order(labels: Sequence[str]) -> tuple[str, ...]:
    """Emotions first in the data's fixed order, then objects as given: the model only ever saw
    that layout, and callers (detectors) may list labels in any order."""
    emotions = sorted((label for label in labels if label in EMOTION_LABELS), key=_EMOTION_ORDER.__getitem__)
    return (*emotions, *object_labels(labels))


def load_pairs(path: str | Path) -> list[CommentPair]:
    """Read a JSONL file of `{"labels": [...], "comment": "..."}` lines; malformed lines are errors."""
    pairs: list[CommentPair] = []
    with Path(path).open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{line_number}: expected an object with labels and comment")
            labels = record.get("labels")
            comment = record.get("comment")
            if not isinstance(labels, list) or not isinstance(comment, str):
                raise ValueError(f"{path}:{line_number}: needs a 'labels' list and a 'comment' string")
            try:
                clean_labels = normalize_labels(labels, max_labels=len(labels) or 1)
            except CommenterInputError as exc:
                raise ValueError(f"{path}:{line_number}: {exc}") from exc
            text = comment.strip()
            if not text:
                raise ValueError(f"{path}:{line_number}: empty comment")
            pairs.append(CommentPair(clean_labels, text))
    if not pairs:
        raise ValueError(f"{path}: no label/comment pairs found")
    return pairs


def split_pairs(pairs: Sequence[CommentPair], *, dev_fraction: float = 0.1, salt: str = "lumi-dev") -> Split:
    """Assign each pair to dev when the hash of its id falls under `dev_fraction`."""
    if not 0.0 <= dev_fraction < 1.0:
        raise ValueError("dev_fraction must be in [0, 1)")
    threshold = int(dev_fraction * 10_000)
    train: list[CommentPair] = []
    dev: list[CommentPair] = []
    for pair in pairs:
        bucket = int(hashlib.sha256(f"{salt}:{pair.pair_id}".encode()).hexdigest()[:8], 16) % 10_000
        (dev if bucket < threshold else train).append(pair)
    return Split(train=train, dev=dev)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
