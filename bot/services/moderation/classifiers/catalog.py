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

This module keeps the registry file (reading, caching, adding, removing); an entry is a
``RegisteredClassifier`` (``entries``) and what a registration must pass is in
``checks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bot.errors import UserFacingError
from bot.services.moderation.classifiers.checks import (
    check_category,
    custom_rule,
    file_sha256,
    validation_summary,
    verify_classifier,
)
from bot.services.moderation.classifiers.entries import RegisteredClassifier
from bot.services.moderation.policy import Action
from inference.classifier import METADATA_FILE, MetadataError, classifier_files, read_metadata
from inference.registry import ModelUnavailable

__all__ = ["REGISTRY_FILE", "ClassifierCatalog", "classifier_catalog"]

log = logging.getLogger(__name__)

REGISTRY_FILE: Final = "registry.json"
_REGISTRY_FORMAT: Final = "lumi-classifier-registry"
_LOCK_FILE: Final = ".lock"


def classifier_catalog(data_dir: Path) -> ClassifierCatalog:
    """The catalog the bot and the command line share: ``DATA_DIR/classifiers``."""
    return ClassifierCatalog(data_dir / "classifiers")


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
        check_category(category)
        if guild_id is not None and guild_id <= 0:
            raise UserFacingError("--guild must be a server id (a positive number)")
        try:
            model_path, metadata_path = classifier_files(source)
            metadata = read_metadata(metadata_path)
        except MetadataError as error:
            raise UserFacingError(str(error)) from None
        rule = custom_rule(category, metadata, review=review, act=act, review_action=review_action)
        digest = file_sha256(model_path)
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
                validation=validation_summary(metadata),
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
