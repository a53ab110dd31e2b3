"""One registered custom classifier, as recorded in the classifier registry (``registry.json``).

``RegisteredClassifier`` says which category and server the classifier scores for, what the model is
(classes, backbone, input size, digest), where its files are kept with their digests (``ClassifierFile``)
and, for a category of its own, its review and action thresholds. It converts to and from the registry's
JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.services.moderation.policy import CATEGORIES, Action, CategoryRule

__all__ = ["ClassifierFile", "RegisteredClassifier"]


@dataclass(frozen=True)
class ClassifierFile:
    """One file of a registered model: its name in the model folder, where the registry's store keeps it
    (a path under the folder store, a blob key) and what it must hash to before it is loaded."""

    name: str
    key: str
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ClassifierFile:
        return cls(
            name=str(raw["name"]), key=str(raw["key"]), sha256=str(raw["sha256"]), size=int(raw["size"])
        )


@dataclass(frozen=True)
class RegisteredClassifier:
    id: int
    category: str
    guild_id: int | None
    folder: str
    name: str
    positive_class: str
    classes: tuple[str, ...]
    backbone: str
    input_size: tuple[int, int]
    recommended_threshold: float
    sha256: str
    added_at: str
    source: str
    # Only for categories outside the built-in ones; those follow the guild's policy.
    review: float | None = None
    act: float | None = None
    review_action: Action = Action.ALERT
    validation: Mapping[str, Any] = field(default_factory=dict)
    # Empty for registrations recorded before files were listed (a folder store's, loaded as they are).
    files: tuple[ClassifierFile, ...] = ()

    @property
    def model_key(self) -> str:
        return f"classifier-{self.id}"

    @property
    def builtin_category(self) -> bool:
        return self.category in CATEGORIES

    @property
    def scope(self) -> str:
        return "global" if self.guild_id is None else f"guild {self.guild_id}"

    def applies_to(self, guild_id: int | None) -> bool:
        return self.guild_id is None or self.guild_id == guild_id

    def rule(self) -> CategoryRule | None:
        if self.builtin_category:
            return None
        return CategoryRule(review=self.review, act=self.act, review_action=self.review_action)

    def thresholds_text(self) -> str:
        if self.builtin_category:
            return "thresholds: the server's policy for this category"
        review = "off" if self.review is None else f"≥ {self.review:.2f} ({self.review_action.value})"
        act = "off" if self.act is None else f"≥ {self.act:.2f}"
        return f"review {review}, auto-action {act}"

    def summary(self) -> str:
        accuracy = self.validation.get("accuracy")
        quality = f", validation accuracy {accuracy:.2f}" if isinstance(accuracy, int | float) else ""
        return (
            f"#{self.id} {self.category} ({self.scope}): {self.name}, {self.backbone} "
            f"{self.input_size[0]}x{self.input_size[1]}, flags {self.positive_class!r}{quality}; "
            f"{self.thresholds_text()}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "guild_id": self.guild_id,
            "folder": self.folder,
            "name": self.name,
            "positive_class": self.positive_class,
            "classes": list(self.classes),
            "backbone": self.backbone,
            "input_size": list(self.input_size),
            "recommended_threshold": self.recommended_threshold,
            "sha256": self.sha256,
            "added_at": self.added_at,
            "source": self.source,
            "review": self.review,
            "act": self.act,
            "review_action": self.review_action.value,
            "validation": dict(self.validation),
            "files": [item.to_json() for item in self.files],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RegisteredClassifier:
        size = raw["input_size"]
        return cls(
            id=int(raw["id"]),
            category=str(raw["category"]),
            guild_id=None if raw.get("guild_id") is None else int(raw["guild_id"]),
            folder=str(raw["folder"]),
            name=str(raw.get("name", raw["folder"])),
            positive_class=str(raw["positive_class"]),
            classes=tuple(str(name) for name in raw["classes"]),
            backbone=str(raw.get("backbone", "unknown")),
            input_size=(int(size[0]), int(size[1])),
            recommended_threshold=float(raw["recommended_threshold"]),
            sha256=str(raw.get("sha256", "")),
            added_at=str(raw.get("added_at", "")),
            source=str(raw.get("source", "")),
            review=None if raw.get("review") is None else float(raw["review"]),
            act=None if raw.get("act") is None else float(raw["act"]),
            review_action=Action(raw.get("review_action", Action.ALERT.value)),
            validation=dict(raw.get("validation", {})),
            files=tuple(ClassifierFile.from_json(item) for item in raw.get("files", [])),
        )
