"""Which custom image classifiers are registered, for which category and server, and where they live.

A trained classifier (the output folder of `lumi train classifier`) is registered for a category,
globally or for one guild, with `lumi models add-classifier`. Registration copies the model into
``DATA_DIR/classifiers/<id>-<category>/`` and records it in ``DATA_DIR/classifiers/registry.json``.

Why a JSON file beside the models and not a database table: a registration is only as good as the
model files it names, and those live on this host's disk. Keeping the record next to them means a backup,
a restore or a move of DATA_DIR keeps both consistent, a shared PostgreSQL never lists a model another
host does not have, and no schema migration is needed. Writers (the command line) hold a file lock and
replace the file atomically; the bot re-reads it when it changes, so registrations take effect in a
running bot within seconds.

For the built-in categories (violence, violence_graphic, self_harm...) the guild's thresholds apply, as
set with `/moderation setup`. A classifier may also bring a category of its own (``weapons``): its review
threshold defaults to the one recommended at training, it alerts moderators and takes no automatic
action unless registered with ``--act``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from PIL import Image

from bot.errors import UserFacingError
from bot.services.moderation_decisions import category_scores
from bot.services.moderation_policy import CATEGORIES, Action, CategoryRule
from inference.classifier_metadata import (
    METADATA_FILE,
    ClassifierMetadata,
    MetadataError,
    classifier_files,
    read_metadata,
)
from inference.registry import ModelUnavailable
from inference.runners.keras_classifier import KerasClassifierRunner

__all__ = [
    "REGISTRY_FILE",
    "ClassifierCatalog",
    "RegisteredClassifier",
    "classifier_catalog",
    "verify_classifier",
]

log = logging.getLogger(__name__)

REGISTRY_FILE: Final = "registry.json"
_REGISTRY_FORMAT: Final = "lumi-classifier-registry"
_LOCK_FILE: Final = ".lock"
_CATEGORY_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
_REVIEW_ACTIONS: Final = (Action.ALERT, Action.HOLD)


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
        )


def classifier_catalog(data_dir: Path) -> ClassifierCatalog:
    """The catalog the bot and the command line share: ``DATA_DIR/classifiers``."""
    return ClassifierCatalog(data_dir / "classifiers")


def verify_classifier(folder: Path) -> None:
    """Load the classifier and run one image through it; raises ``ModelUnavailable`` when that fails.

    Imports TensorFlow (seconds): registration pays it once so a broken model is refused at the command
    line instead of failing on the first posted image.
    """
    runner = KerasClassifierRunner(folder, "cpu", name=f"classifier {folder.name}")
    runner.load()
    try:
        height, width = runner.metadata.input_size
        runner.predict_batch([Image.new("RGB", (width, height), (128, 128, 128))])
    finally:
        runner.close()


class ClassifierCatalog:
    """The registered classifiers under ``root``. Sync methods for the command line, async for the bot."""

    def __init__(self, root: Path, *, refresh_s: float = 5.0) -> None:
        self.root = root
        self.refresh_s = refresh_s
        self._cached: list[RegisteredClassifier] = []
        self._cached_stamp: tuple[int, int] | None = None
        self._checked_at = -float("inf")
        self._refresh_lock = asyncio.Lock()

    @property
    def registry_path(self) -> Path:
        return self.root / REGISTRY_FILE

    def folder_of(self, classifier: RegisteredClassifier) -> Path:
        return self.root / classifier.folder

    # -- reading ----------------------------------------------------------------------------------------

    def load(self) -> list[RegisteredClassifier]:
        return self._read()[1]

    def _read(self) -> tuple[int, list[RegisteredClassifier]]:
        try:
            raw = json.loads(self.registry_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return 1, []
        except (OSError, ValueError) as error:
            raise UserFacingError(f"cannot read {self.registry_path}: {error}") from None
        if not isinstance(raw, dict) or raw.get("format") != _REGISTRY_FORMAT:
            raise UserFacingError(f"{self.registry_path} is not a Lumi classifier registry")
        entries = []
        for item in raw.get("classifiers", []):
            try:
                entries.append(RegisteredClassifier.from_json(item))
            except (KeyError, TypeError, ValueError) as error:
                log.warning("skipping a malformed entry of %s: %s", self.registry_path, error)
        return int(raw.get("next_id", 1)), entries

    async def current(self) -> list[RegisteredClassifier]:
        """The registrations, re-read when the file changed (looked at once per ``refresh_s`` at most)."""
        if time.monotonic() - self._checked_at < self.refresh_s:
            return self._cached
        async with self._refresh_lock:
            if time.monotonic() - self._checked_at >= self.refresh_s:
                await asyncio.to_thread(self._refresh)
                self._checked_at = time.monotonic()
        return self._cached

    @property
    def cached(self) -> list[RegisteredClassifier]:
        """What `current` last returned, without looking at the file."""
        return self._cached

    def invalidate(self) -> None:
        self._checked_at = -float("inf")

    def _refresh(self) -> None:
        try:
            info = self.registry_path.stat()
            stamp: tuple[int, int] | None = (info.st_mtime_ns, info.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._cached_stamp:
            return
        try:
            self._cached = self.load()
        except UserFacingError as error:
            # A damaged file must not stop moderation: the last good list stays in use.
            log.error("custom classifiers not reloaded: %s", error)
            return
        self._cached_stamp = stamp
        log.info("custom classifiers: %d registered", len(self._cached))

    async def for_guild(self, guild_id: int | None, *, fresh: bool = False) -> list[RegisteredClassifier]:
        """Those that apply to a guild; ``fresh`` looks at the file now (the checks then use it too)."""
        if fresh:
            self.invalidate()
        return [entry for entry in await self.current() if entry.applies_to(guild_id)]

    # -- changing ---------------------------------------------------------------------------------------

    def add(
        self,
        source: Path,
        *,
        category: str,
        guild_id: int | None = None,
        review: float | None = None,
        act: float | None = None,
        review_action: str | None = None,
        name: str | None = None,
        verify: Callable[[Path], None] | None = verify_classifier,
    ) -> RegisteredClassifier:
        """Copy the classifier at ``source`` in and register it; ``UserFacingError`` says what is wrong."""
        category = category.strip().lower()
        _check_category(category)
        if guild_id is not None and guild_id <= 0:
            raise UserFacingError("--guild must be a server id (a positive number)")
        try:
            model_path, metadata_path = classifier_files(source)
            metadata = read_metadata(metadata_path)
        except MetadataError as error:
            raise UserFacingError(str(error)) from None
        rule = _custom_rule(category, metadata, review=review, act=act, review_action=review_action)
        digest = _sha256(model_path)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            next_id, entries = self._read()
            for entry in entries:
                if entry.sha256 == digest and entry.category == category and entry.guild_id == guild_id:
                    raise UserFacingError(
                        f"this model is already registered as #{entry.id} ({entry.summary()})"
                    )
            folder = f"{next_id}-{category}"
            staging = self.root / f".incoming-{folder}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            try:
                shutil.copy2(model_path, staging / metadata.model_file)
                shutil.copy2(metadata_path, staging / METADATA_FILE)
                if verify is not None:
                    try:
                        verify(staging)
                    except ModelUnavailable as error:
                        raise UserFacingError(f"the classifier does not load: {error.reason}") from None
                staging.rename(self.root / folder)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            entry = RegisteredClassifier(
                id=next_id,
                category=category,
                guild_id=guild_id,
                folder=folder,
                name=name or model_path.parent.resolve().name,
                positive_class=metadata.positive_class,
                classes=metadata.classes,
                backbone=metadata.backbone,
                input_size=metadata.input_size,
                recommended_threshold=metadata.recommended_threshold,
                sha256=digest,
                added_at=datetime.now(UTC).isoformat(timespec="seconds"),
                source=str(source.resolve()),
                review=rule.review if rule else None,
                act=rule.act if rule else None,
                review_action=(rule.review_action or Action.ALERT) if rule else Action.ALERT,
                validation=_validation_summary(metadata),
            )
            self._write(next_id + 1, [*entries, entry])
        self.invalidate()
        return entry

    def remove(self, classifier_id: int) -> RegisteredClassifier:
        with self._locked():
            next_id, entries = self._read()
            found = next((entry for entry in entries if entry.id == classifier_id), None)
            if found is None:
                known = ", ".join(f"#{entry.id}" for entry in entries) or "none"
                raise UserFacingError(f"no classifier #{classifier_id} is registered (registered: {known})")
            self._write(next_id, [entry for entry in entries if entry.id != classifier_id])
            shutil.rmtree(self.folder_of(found), ignore_errors=True)
        self.invalidate()
        return found

    def _write(self, next_id: int, entries: list[RegisteredClassifier]) -> None:
        document = {
            "format": _REGISTRY_FORMAT,
            "version": 1,
            "next_id": next_id,
            "classifiers": [entry.to_json() for entry in entries],
        }
        temporary = self.registry_path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(temporary, self.registry_path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.root / _LOCK_FILE).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _check_category(category: str) -> None:
    if not _CATEGORY_NAME.match(category):
        raise UserFacingError(
            "a category name is 2-32 lowercase letters, digits or underscores, starting with a letter "
            f"(built-in: {', '.join(CATEGORIES)})"
        )
    if category not in CATEGORIES and category not in category_scores(
        (), None, {category: 1.0}, custom=[category]
    ):
        raise UserFacingError(f"{category!r} is another name for a built-in category; use that one instead")


def _custom_rule(
    category: str,
    metadata: ClassifierMetadata,
    *,
    review: float | None,
    act: float | None,
    review_action: str | None,
) -> CategoryRule | None:
    if category in CATEGORIES:
        if review is not None or act is not None or review_action is not None:
            raise UserFacingError(
                f"{category} is a built-in category: its thresholds are the server's moderation policy "
                "(/moderation setup), not part of the classifier"
            )
        return None
    for label, value in (("--review", review), ("--act", act)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise UserFacingError(f"{label} must be between 0 and 1 (got {value:g})")
    chosen_review = metadata.recommended_threshold if review is None else review
    if act is not None and act < chosen_review:
        raise UserFacingError(f"--act ({act:g}) must not be below the review threshold ({chosen_review:g})")
    action = Action.ALERT
    if review_action is not None:
        if review_action not in {choice.value for choice in _REVIEW_ACTIONS}:
            raise UserFacingError("--review-action must be alert or hold")
        action = Action(review_action)
    return CategoryRule(review=chosen_review, act=act, review_action=action)


def _validation_summary(metadata: ClassifierMetadata) -> dict[str, Any]:
    metrics = metadata.metrics
    summary: dict[str, Any] = {}
    if isinstance(metrics.get("accuracy"), int | float):
        summary["accuracy"] = float(metrics["accuracy"])
    at_threshold = metrics.get("at_threshold")
    if isinstance(at_threshold, Mapping):
        for key in ("precision", "recall", "f1"):
            if isinstance(at_threshold.get(key), int | float):
                summary[key] = float(at_threshold[key])
    return summary


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
