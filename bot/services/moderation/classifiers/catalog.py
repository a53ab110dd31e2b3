"""Which custom image classifiers are registered, for which category and server, and where they live.

A trained classifier (the output folder of `lumi train classifier`) is registered for a category,
globally or for one guild, with `lumi models add-classifier`. Registration checks that the model loads,
hands its files to the registry's store and records it in the registry document, ``registry.json``.

Where the registry is kept is the store's business (``registry_store``): in embedded mode (and where
processes share DATA_DIR) a file beside the model folders under ``DATA_DIR/classifiers``
(``local_registry``, which says why a file and not a table); in distributed mode with a remote blob store,
the blob store every process reads (``blob_registry``), each process copying a model into its
``DATA_DIR/classifiers-cache`` before loading it. ``classifier_catalog_for`` picks one from the settings.

A change is read, applied and written back only if the registry is still at the version read
(compare-and-swap, under a file lock in a folder); a writer that lost a race reads again and retries, so
concurrent registrations are all kept. The bot polls the registry (once per ``refresh_s`` at most, while
it checks images), so registrations take effect in a running bot within seconds; a registry that cannot
be read or parsed leaves the last good list in use.

For the built-in categories (violence, violence_graphic, self_harm...) the guild's thresholds apply, as
set with `/moderation setup`. A classifier may also bring a category of its own (``weapons``): its review
threshold defaults to the one recommended at training, it alerts moderators and takes no automatic
action unless registered with ``--act``.

An entry is a ``RegisteredClassifier`` (``entries``) and what a registration must pass is in ``checks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Final

from bot.config import Settings
from bot.errors import UserFacingError
from bot.services.moderation.classifiers.blob_registry import BlobRegistryStore
from bot.services.moderation.classifiers.checks import (
    check_category,
    custom_rule,
    file_sha256,
    validation_summary,
    verify_classifier,
)
from bot.services.moderation.classifiers.entries import ClassifierFile, RegisteredClassifier
from bot.services.moderation.classifiers.local_registry import REGISTRY_FILE, LocalRegistryStore
from bot.services.moderation.classifiers.registry_store import (
    ClassifierFilesError,
    RegistryConflict,
    RegistryStore,
    parse_registry,
    registry_bytes,
)
from bot.services.moderation.policy import Action
from inference.classifier import METADATA_FILE, MetadataError, classifier_files, read_metadata
from inference.registry import ModelUnavailable
from storage.blob_stores import open_blob_store, parse_blob_store_url

__all__ = ["REGISTRY_FILE", "ClassifierCatalog", "classifier_catalog", "classifier_catalog_for"]

log = logging.getLogger(__name__)

# Each lost compare-and-swap means another registration got in first; this many in a row is not a race.
WRITE_ATTEMPTS: Final = 8


def classifier_catalog(data_dir: Path) -> ClassifierCatalog:
    """The catalog in a folder: ``DATA_DIR/classifiers``."""
    return ClassifierCatalog(data_dir / "classifiers")


def classifier_catalog_for(settings: Settings) -> ClassifierCatalog:
    """The catalog the bot and the command line share: in the blob store in distributed mode with a
    remote BLOB_STORE_URL, else under DATA_DIR (embedded mode, or a DATA_DIR every process shares)."""
    blob_settings = settings.blob_store_settings()
    if settings.lumi_mode != "distributed" or not parse_blob_store_url(blob_settings.url).is_remote:
        return classifier_catalog(settings.data_dir)
    store = BlobRegistryStore(
        partial(open_blob_store, blob_settings),
        settings.data_dir / "classifiers-cache",
        where=blob_settings.url.strip(),
    )
    return ClassifierCatalog(store)


class ClassifierCatalog:
    """The registered classifiers in ``store`` (a folder path means a ``LocalRegistryStore``). The calls
    block: the command line makes them directly, the bot through ``current`` (in a thread)."""

    def __init__(self, store: RegistryStore | Path, *, refresh_s: float = 5.0) -> None:
        self.store: RegistryStore = LocalRegistryStore(store) if isinstance(store, Path) else store
        self.refresh_s = refresh_s
        self._cached: list[RegisteredClassifier] = []
        self._cached_stamp: str | None = None
        self._checked_at = -float("inf")
        self._refresh_lock = asyncio.Lock()

    @property
    def root(self) -> Path:
        """The local folder the store keeps its files in (the models, or the cached copies)."""
        return self.store.staging_root

    def folder_of(self, classifier: RegisteredClassifier) -> Path:
        """The classifier's model folder on this host; fetched and checked first from a remote store
        (``ClassifierFilesError`` when its files are not the registered ones)."""
        return self.store.model_folder(classifier)

    def close(self) -> None:
        self.store.close()

    # -- reading ----------------------------------------------------------------------------------------

    def load(self) -> list[RegisteredClassifier]:
        return self._read()[1]

    def _read(self) -> tuple[int, list[RegisteredClassifier], str | None]:
        try:
            document = self.store.read()
        except OSError as error:
            raise UserFacingError(f"cannot read {self.store.description}: {error}") from None
        if document is None:
            return 1, [], None
        next_id, entries = parse_registry(document.data, where=self.store.description)
        return next_id, entries, document.version

    async def current(self) -> list[RegisteredClassifier]:
        """The registrations, re-read when the registry changed (looked at once per ``refresh_s`` at most)."""
        if time.monotonic() - self._checked_at < self.refresh_s:
            return self._cached
        async with self._refresh_lock:
            if time.monotonic() - self._checked_at >= self.refresh_s:
                await asyncio.to_thread(self._refresh)
                self._checked_at = time.monotonic()
        return self._cached

    @property
    def cached(self) -> list[RegisteredClassifier]:
        """What `current` last returned, without looking at the registry."""
        return self._cached

    def invalidate(self) -> None:
        self._checked_at = -float("inf")

    def _refresh(self) -> None:
        try:
            stamp = self.store.stamp()
            if stamp == self._cached_stamp:
                return
            self._cached = self.load()
        except (OSError, UserFacingError) as error:
            # A damaged or unreachable registry must not stop moderation: the last good list stays in use.
            log.error("custom classifiers not reloaded: %s", error)
            return
        self._cached_stamp = stamp
        log.info("custom classifiers: %d registered", len(self._cached))

    async def for_guild(self, guild_id: int | None, *, fresh: bool = False) -> list[RegisteredClassifier]:
        """Those that apply to a guild; ``fresh`` looks at the registry now (the checks then use it too)."""
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
        """Check the classifier at ``source``, store its files and register it; ``UserFacingError`` says
        what is wrong."""
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

        def registration(next_id: int, entries: list[RegisteredClassifier]) -> _Change:
            for entry in entries:
                if entry.sha256 == digest and entry.category == category and entry.guild_id == guild_id:
                    raise UserFacingError(
                        f"this model is already registered as #{entry.id} ({entry.summary()})"
                    )
            folder, files = self._add_files(staging, next_id, category)
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
                files=files,
            )
            return _Change(next_id + 1, [*entries, entry], entry, undo=lambda: self._remove_files(entry))

        with self._staged(model_path, metadata_path, metadata.model_file, verify) as staging:
            return self._change(registration)

    def remove(self, classifier_id: int) -> RegisteredClassifier:
        def removal(next_id: int, entries: list[RegisteredClassifier]) -> _Change:
            found = next((entry for entry in entries if entry.id == classifier_id), None)
            if found is None:
                known = ", ".join(f"#{entry.id}" for entry in entries) or "none"
                raise UserFacingError(f"no classifier #{classifier_id} is registered (registered: {known})")
            return _Change(next_id, [entry for entry in entries if entry.id != classifier_id], found)

        removed = self._change(removal)
        self._remove_files(removed)
        return removed

    def _change(self, attempt: Callable[[int, list[RegisteredClassifier]], _Change]) -> RegisteredClassifier:
        """Read the registry, apply ``attempt`` and write the result if the registry is still as read;
        when another writer came first, undo and try again on what it wrote."""
        with self.store.writing():
            for _attempt in range(WRITE_ATTEMPTS):
                next_id, entries, version = self._read()
                change = attempt(next_id, entries)
                try:
                    self._write(change.next_id, change.entries, version=version)
                except RegistryConflict as conflict:
                    change.undo()
                    log.info("the classifier registry changed meanwhile; trying again (%s)", conflict)
                    continue
                except BaseException:
                    change.undo()
                    raise
                self.invalidate()
                return change.entry
        raise UserFacingError(
            f"{self.store.description} changed {WRITE_ATTEMPTS} times while this change was written "
            "(other registrations at the same moment); run the command again"
        )

    @contextlib.contextmanager
    def _staged(
        self, model_path: Path, metadata_path: Path, model_file: str, verify: Callable[[Path], None] | None
    ) -> Iterator[Path]:
        """The model copied into a folder of its own and checked there, before the store takes it."""
        self.store.staging_root.mkdir(parents=True, exist_ok=True)
        staging = self.store.staging_root / f".incoming-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            shutil.copy2(model_path, staging / model_file)
            shutil.copy2(metadata_path, staging / METADATA_FILE)
            if verify is not None:
                try:
                    verify(staging)
                except ModelUnavailable as error:
                    raise UserFacingError(f"the classifier does not load: {error.reason}") from None
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _add_files(
        self, staging: Path, next_id: int, category: str
    ) -> tuple[str, tuple[ClassifierFile, ...]]:
        try:
            return self.store.add_files(staging, classifier_id=next_id, category=category)
        except ClassifierFilesError as error:
            raise UserFacingError(str(error)) from None
        except OSError as error:
            raise UserFacingError(
                f"cannot store the classifier's files for {self.store.description}: {error}"
            ) from None

    def _remove_files(self, entry: RegisteredClassifier) -> None:
        # The registry no longer names them (or never did): a file left behind is only disk space.
        try:
            self.store.remove_files(entry)
        except OSError as error:
            log.warning(
                "could not delete the files of classifier #%s (%s): %s", entry.id, entry.folder, error
            )

    def _write(self, next_id: int, entries: list[RegisteredClassifier], *, version: str | None) -> None:
        try:
            self.store.write(registry_bytes(next_id, entries), version=version)
        except OSError as error:
            raise UserFacingError(f"cannot write {self.store.description}: {error}") from None


@dataclass(frozen=True)
class _Change:
    """A registry with one change applied: its next id and entries, the entry added or removed, and how
    to undo what the change did outside the registry (files stored) when the write loses a race."""

    next_id: int
    entries: list[RegisteredClassifier]
    entry: RegisteredClassifier
    undo: Callable[[], None] = lambda: None
