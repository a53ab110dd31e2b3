"""``LocalRegistryStore``: the classifier registry as ``registry.json`` beside the model folders.

Why a JSON file beside the models and not a database table: a registration is only as good as the model
files it names, and those live on this host's disk. Keeping the record next to them means a backup, a
restore or a move of DATA_DIR keeps both consistent, a shared PostgreSQL never lists a model another host
does not have, and no schema migration is needed. Writers (the command line) hold a file lock around a
change and replace the file atomically; the version the catalog compares is the file's SHA-256.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from bot.services.moderation.classifiers.checks import file_sha256
from bot.services.moderation.classifiers.entries import ClassifierFile, RegisteredClassifier
from bot.services.moderation.classifiers.registry_store import RegistryConflict, RegistryDocument

__all__ = ["REGISTRY_FILE", "LocalRegistryStore"]

REGISTRY_FILE: Final = "registry.json"
_LOCK_FILE: Final = ".lock"


class LocalRegistryStore:
    """``root/registry.json`` and one folder per registration, ``root/<id>-<category>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def registry_path(self) -> Path:
        return self.root / REGISTRY_FILE

    @property
    def description(self) -> str:
        return str(self.registry_path)

    @property
    def staging_root(self) -> Path:
        return self.root

    def read(self) -> RegistryDocument | None:
        try:
            data = self.registry_path.read_bytes()
        except FileNotFoundError:
            return None
        return RegistryDocument(data, hashlib.sha256(data).hexdigest())

    def stamp(self) -> str | None:
        try:
            info = self.registry_path.stat()
        except FileNotFoundError:
            return None
        return f"{info.st_mtime_ns}:{info.st_size}"

    def write(self, data: bytes, *, version: str | None) -> None:
        current = self.read()
        if (current.version if current is not None else None) != version:
            raise RegistryConflict(f"{self.registry_path} changed since version {version}")
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.registry_path.with_suffix(".json.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, self.registry_path)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / _LOCK_FILE).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def add_files(
        self, staging: Path, *, classifier_id: int, category: str
    ) -> tuple[str, tuple[ClassifierFile, ...]]:
        folder = f"{classifier_id}-{category}"
        target = self.root / folder
        # Ids are never reused and writers hold the lock: a folder there is what a crashed writer left.
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(staging, target)
        files = tuple(
            ClassifierFile(path.name, f"{folder}/{path.name}", file_sha256(path), path.stat().st_size)
            for path in sorted(target.iterdir())
        )
        return folder, files

    def remove_files(self, entry: RegisteredClassifier) -> None:
        shutil.rmtree(self.root / entry.folder, ignore_errors=True)

    def model_folder(self, entry: RegisteredClassifier) -> Path:
        # The folder is this host's own copy: loaded as it is, as it always was.
        return self.root / entry.folder

    def forget_copy(self, entry: RegisteredClassifier) -> None:
        # The folder is the registration itself, deleted by whoever removes it.
        return None

    def close(self) -> None:
        return None
