"""Where the classifier registry and its model files are kept: the interface the catalog works through.

Two stores implement it. ``LocalRegistryStore`` keeps ``registry.json`` and the model folders under
``DATA_DIR/classifiers`` (an embedded Lumi, or processes sharing one DATA_DIR). ``BlobRegistryStore``
keeps both in the deployment's blob store (distributed mode with BLOB_STORE_URL), where every process
reads them, and copies a model into ``DATA_DIR/classifiers-cache/<id>`` before it is loaded.

The registry is one small document. The catalog reads it with its version and writes it back only if it
is still at that version (compare-and-swap); a writer that lost the race reads it again and retries, so
two registrations at once are both kept. The calls block (a thread of the bot's, or the command line).
"""

from __future__ import annotations

import json
import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from bot.errors import UserFacingError
from bot.services.moderation.classifiers.entries import ClassifierFile, RegisteredClassifier

__all__ = [
    "ClassifierFilesError",
    "RegistryConflict",
    "RegistryDocument",
    "RegistryStore",
    "parse_registry",
    "registry_bytes",
]

log = logging.getLogger(__name__)

_REGISTRY_FORMAT: Final = "lumi-classifier-registry"


class RegistryConflict(Exception):
    """The registry changed since its version was read: read it again and retry."""


class ClassifierFilesError(Exception):
    """A registered model's files cannot be had as registered (missing, or not what their digest says);
    the message says which file, where, and what to do."""


@dataclass(frozen=True)
class RegistryDocument:
    """The registry's bytes and their version (opaque; compared for equality by the store)."""

    data: bytes
    version: str


class RegistryStore(Protocol):
    @property
    def description(self) -> str:
        """Where the registry is, for messages (``/data/classifiers/registry.json``)."""
        ...

    @property
    def staging_root(self) -> Path:
        """A local folder where a new model is copied and checked before the store takes it."""
        ...

    def read(self) -> RegistryDocument | None:
        """The registry document, None when nothing is registered yet; ``OSError`` when unreachable."""
        ...

    def stamp(self) -> str | None:
        """A cheap value that changes whenever the document does (None: no document), for polling."""
        ...

    def write(self, data: bytes, *, version: str | None) -> None:
        """Replace the document if it is still at ``version`` (None: only if there is none yet), else
        raise ``RegistryConflict``."""
        ...

    def writing(self) -> AbstractContextManager[None]:
        """Held around a change: a lock where the store has one (a folder), nothing where the
        compare-and-swap alone keeps writers apart (a blob store)."""
        ...

    def add_files(
        self, staging: Path, *, classifier_id: int, category: str
    ) -> tuple[str, tuple[ClassifierFile, ...]]:
        """Store the files of the checked model in ``staging`` for a new registration (``staging`` is
        left as it is); returns the registration's folder name and its files."""
        ...

    def remove_files(self, entry: RegisteredClassifier) -> None:
        """Delete a registration's files (after the registry no longer names them)."""
        ...

    def model_folder(self, entry: RegisteredClassifier) -> Path:
        """A local folder holding the registration's model, ready to load (fetched and checked against
        the recorded digests first where the store is remote); ``ClassifierFilesError`` when it cannot."""
        ...

    def forget_copy(self, entry: RegisteredClassifier) -> None:
        """This process no longer uses the registration (removed elsewhere): drop its local copy, if
        the store made one."""
        ...

    def close(self) -> None: ...


def parse_registry(data: bytes, *, where: str) -> tuple[int, list[RegisteredClassifier]]:
    """The next id and the entries of a registry document; ``UserFacingError`` naming ``where`` when
    it is not one. A malformed entry is skipped (logged), so one bad record does not hide the others."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except ValueError as error:
        raise UserFacingError(f"cannot read {where}: {error}") from None
    if not isinstance(raw, dict) or raw.get("format") != _REGISTRY_FORMAT:
        raise UserFacingError(f"{where} is not a Lumi classifier registry")
    entries = []
    for item in raw.get("classifiers", []):
        try:
            entries.append(RegisteredClassifier.from_json(item))
        except (KeyError, TypeError, ValueError) as error:
            log.warning("skipping a malformed entry of %s: %s", where, error)
    return int(raw.get("next_id", 1)), entries


def registry_bytes(next_id: int, entries: list[RegisteredClassifier]) -> bytes:
    document = {
        "format": _REGISTRY_FORMAT,
        "version": 1,
        "next_id": next_id,
        "classifiers": [entry.to_json() for entry in entries],
    }
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
