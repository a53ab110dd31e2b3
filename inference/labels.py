"""What a photo shows, named in Korean and English: face emotions and Open Images V7 objects.

The object table (`inference/data/oiv7_labels.json`) is the project's own: class ids and English names
follow the Open Images V7 dataset config that ultralytics ships (`cfg/datasets/open-images-v7.yaml`,
the class order of its `yolov8*-oiv7.pt` weights); the Korean names are the vocabulary of the comment
training data, so a detected object reaches the comment model under the exact word it learned. Where
that vocabulary has no usable name (five classes, none of them used by any training comment: Fireplace
has a translator's sentence, " fireplace는 "벽난로"로 번역됩니다.", Falcon ends in Arabic letters) the
table says what the word is (벽난로, 매) and records the vocabulary's text and the reason under
``ko_corrections``; the test that compares the table with the vocabulary applies exactly those.
`tests/inference/test_objects.py` checks the table against both sources.

Classes marked ``generic`` (people and their body parts, "Clothing", "Mammal") are left out of comment
labels: nearly every photo of a person has them, the faces already speak for the people through their
emotion, and the training data almost never uses them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final, Literal

__all__ = [
    "EMOTION_LABELS",
    "LANGUAGES",
    "Label",
    "LabelKind",
    "Language",
    "ObjectClass",
    "ObjectVocabulary",
    "emotion_label",
    "label_from_text",
    "labels_from_text",
    "oiv7_vocabulary",
    "select_labels",
]

Language = Literal["ko", "en"]
LANGUAGES: Final[tuple[Language, ...]] = ("ko", "en")
LabelKind = Literal["emotion", "object"]

TABLE_PATH: Final = Path(__file__).resolve().parent / "data" / "oiv7_labels.json"


@dataclass(frozen=True)
class Label:
    """One thing seen in a photo. ``score`` is the detector's confidence (1.0 for labels given by hand)."""

    ko: str
    en: str
    kind: LabelKind
    score: float = 1.0

    def name(self, language: Language) -> str:
        return self.ko if language == "ko" else self.en


# The four emotions of the comment training data, keyed by the emotion model's class names.
EMOTION_LABELS: Final[dict[str, Label]] = {
    "happy": Label("기쁨", "joy", "emotion"),
    "sad": Label("슬픔", "sadness", "emotion"),
    "angry": Label("분노", "anger", "emotion"),
    "fear": Label("공포", "fear", "emotion"),
}
# Other spellings people type on the command line.
_EMOTION_ALIASES: Final[dict[str, str]] = {
    "기쁨": "happy",
    "joy": "happy",
    "happiness": "happy",
    "슬픔": "sad",
    "sadness": "sad",
    "분노": "angry",
    "anger": "angry",
    "공포": "fear",
    "scared": "fear",
}


def emotion_label(name: str, score: float = 1.0) -> Label | None:
    """The label for an emotion name (model class, Korean or English word), or None when it has none."""
    key = name.strip().lower()
    key = _EMOTION_ALIASES.get(key, key)
    label = EMOTION_LABELS.get(key)
    if label is None:
        return None
    return Label(label.ko, label.en, "emotion", score)


@dataclass(frozen=True)
class ObjectClass:
    id: int
    en: str
    ko: str
    generic: bool = False

    def label(self, score: float = 1.0) -> Label:
        return Label(self.ko, self.en, "object", score)


class ObjectVocabulary:
    """Object classes by id and by name (English case-insensitively, Korean exactly)."""

    def __init__(self, classes: Iterable[ObjectClass]) -> None:
        self.classes = sorted(classes, key=lambda item: item.id)
        self._by_id = {item.id: item for item in self.classes}
        self._by_name: dict[str, ObjectClass] = {}
        for item in self.classes:
            self._by_name.setdefault(item.en.casefold(), item)
            self._by_name.setdefault(item.ko, item)
        if len(self._by_id) != len(self.classes):
            raise ValueError("object vocabulary has duplicate class ids")

    def __len__(self) -> int:
        return len(self.classes)

    def by_id(self, class_id: int) -> ObjectClass | None:
        return self._by_id.get(class_id)

    def by_name(self, name: str) -> ObjectClass | None:
        text = " ".join(name.split())
        return self._by_name.get(text) or self._by_name.get(text.casefold())

    @classmethod
    def from_json(cls, path: Path) -> ObjectVocabulary:
        document = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            ObjectClass(
                id=int(entry["id"]),
                en=str(entry["en"]),
                ko=str(entry["ko"]),
                generic=bool(entry.get("generic", False)),
            )
            for entry in document["classes"]
        )


@cache
def oiv7_vocabulary() -> ObjectVocabulary:
    """The Open Images V7 table shipped with Lumi (601 classes)."""
    return ObjectVocabulary.from_json(TABLE_PATH)


def label_from_text(text: str, *, vocabulary: ObjectVocabulary | None = None) -> Label:
    """A label typed by a person: an emotion, a known object (either language), or a free word as is."""
    word = " ".join(text.split())
    if not word:
        raise ValueError("a label cannot be blank")
    emotion = emotion_label(word)
    if emotion is not None:
        return emotion
    known = (vocabulary or oiv7_vocabulary()).by_name(word)
    if known is not None:
        return known.label()
    return Label(word, word, "object")


def labels_from_text(text: str, *, vocabulary: ObjectVocabulary | None = None) -> list[Label]:
    """``"기쁨, 재킷"`` → two labels; blanks between commas are ignored."""
    return [label_from_text(part, vocabulary=vocabulary) for part in text.split(",") if part.strip()]


def select_labels(candidates: Iterable[Label], max_labels: int) -> list[Label]:
    """Most confident first, one entry per name (keeping its best score), at most ``max_labels``."""
    best: dict[str, Label] = {}
    for label in candidates:
        current = best.get(label.ko)
        if current is None or label.score > current.score:
            best[label.ko] = label
    ranked = sorted(best.values(), key=lambda label: label.score, reverse=True)
    return ranked[: max(0, max_labels)]
