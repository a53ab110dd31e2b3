"""``BlobRegistryStore``: the classifier registry and its model files in the deployment's blob store.

In distributed mode every process reads the registry from the blob store: ``classifiers/registry.json``
(written with the store's compare-and-swap, `put_if_version`) and one folder of blobs per registration,
``classifiers/<id>-<category>-<random>/model.keras`` and ``metadata.json``. The random part keeps two
writers that raced for one id from ever writing the same blobs: the loser deletes its own and tries
again with the next id.

Before a process loads a model it copies the blobs into ``DATA_DIR/classifiers-cache/<id>``, through a
folder of its own renamed into place once every file's size and SHA-256 match what the registration
recorded; a blob that is missing, cut short or replaced is refused with a message naming it, and the
other registrations keep serving. A cached copy is checked the same way before each load.

The catalog's calls block; they run the store's asyncio client on an event loop of their own, in one
daemon thread (a daemon, so a command that forgets to close the store still exits), so the command
line, the bot's threads and tests call them alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Final, TypeVar

from bot.services.moderation.classifiers.checks import file_sha256
from bot.services.moderation.classifiers.entries import ClassifierFile, RegisteredClassifier
from bot.services.moderation.classifiers.orphans import (
    ORPHAN_GRACE_S,
    ClassifierFileSweep,
    sweep_orphan_folders,
)
from bot.services.moderation.classifiers.registry_store import (
    ClassifierFilesError,
    RegistryConflict,
    RegistryDocument,
    RegistryStore,
)
from storage.blobs import BlobConflict, BlobNotFound, BlobStore
from storage.db import Database

__all__ = ["BlobRegistryStore", "classifier_file_sweep"]

PREFIX: Final = "classifiers"
REGISTRY_KEY: Final = f"{PREFIX}/registry.json"
_CHUNK: Final = 1 << 20

T = TypeVar("T")


class BlobRegistryStore:
    """The registry in the blob store ``open_store`` opens (on the store's own loop, at first use);
    ``where`` names that store in messages (its BLOB_STORE_URL)."""

    def __init__(self, open_store: Callable[[], BlobStore], cache_root: Path, *, where: str) -> None:
        self.cache_root = cache_root
        self.where = where
        self._open_store = open_store
        self._store: BlobStore | None = None
        self._loop: _Loop | None = None
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"{REGISTRY_KEY} in {self.where}"

    @property
    def staging_root(self) -> Path:
        return self.cache_root

    # -- the loop ---------------------------------------------------------------------------------------

    def _call(self, work: Callable[[BlobStore], Awaitable[T]]) -> T:
        with self._lock:
            if self._loop is None:
                self._loop = _Loop()
            loop = self._loop

        async def run() -> T:
            if self._store is None:
                self._store = self._open_store()
            return await work(self._store)

        return loop.call(run())

    def close(self) -> None:
        with self._lock:
            holder, self._loop = self._loop, None
        if holder is None:
            return
        store, self._store = self._store, None
        if store is not None:
            holder.call(store.close())
        holder.close()

    # -- the registry document ----------------------------------------------------------------------------

    def read(self) -> RegistryDocument | None:
        async def read(store: BlobStore) -> RegistryDocument | None:
            found = await store.read_versioned(REGISTRY_KEY)
            return None if found is None else RegistryDocument(found.data, found.version)

        return self._call(read)

    def stamp(self) -> str | None:
        async def stamp(store: BlobStore) -> str | None:
            info = await store.stat(REGISTRY_KEY)
            return None if info is None else info.sha256

        return self._call(stamp)

    def write(self, data: bytes, *, version: str | None) -> None:
        async def write(store: BlobStore) -> None:
            try:
                await store.put_if_version(REGISTRY_KEY, data, "application/json", version=version)
            except BlobConflict as error:
                raise RegistryConflict(str(error)) from None

        self._call(write)

    def writing(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    # -- model files --------------------------------------------------------------------------------------

    def add_files(
        self, staging: Path, *, classifier_id: int, category: str
    ) -> tuple[str, tuple[ClassifierFile, ...]]:
        folder = f"{classifier_id}-{category}-{secrets.token_hex(4)}"
        paths = sorted(path for path in staging.iterdir() if path.is_file())

        async def upload(store: BlobStore) -> tuple[ClassifierFile, ...]:
            files: list[ClassifierFile] = []
            try:
                for path in paths:
                    digest = await asyncio.to_thread(file_sha256, path)
                    key = f"{PREFIX}/{folder}/{path.name}"
                    info = await store.put_stream(key, _file_chunks(path))
                    if info.sha256 != digest:
                        raise ClassifierFilesError(
                            f"{path.name} changed while it was uploaded to {self.where}; "
                            "run the command again"
                        )
                    files.append(ClassifierFile(path.name, key, info.sha256, info.size))
            except BaseException:
                for key in [f"{PREFIX}/{folder}/{path.name}" for path in paths]:
                    with contextlib.suppress(Exception):
                        await store.delete(key)
                raise
            return tuple(files)

        return folder, self._call(upload)

    def remove_files(self, entry: RegisteredClassifier) -> None:
        async def delete(store: BlobStore) -> None:
            for item in entry.files:
                await store.delete(item.key)

        try:
            self._call(delete)
        finally:
            self.forget_copy(entry)

    def sweep_orphans(self, *, older_than_s: float = ORPHAN_GRACE_S) -> list[str]:
        """Delete the folders under ``classifiers/`` that no registration names, once older than
        ``older_than_s`` (``orphans``); returns their names."""

        async def sweep(store: BlobStore) -> list[str]:
            return await sweep_orphan_folders(
                store, prefix=PREFIX, registry_key=REGISTRY_KEY, older_than_s=older_than_s
            )

        return self._call(sweep)

    def forget_copy(self, entry: RegisteredClassifier) -> None:
        shutil.rmtree(self.cache_root / str(entry.id), ignore_errors=True)

    def model_folder(self, entry: RegisteredClassifier) -> Path:
        if not entry.files:
            raise ClassifierFilesError(
                f"classifier #{entry.id} is recorded in {self.description} without its files; "
                "register it again with `lumi models add-classifier`"
            )
        cached = self.cache_root / str(entry.id)
        if _matches(cached, entry.files):
            return cached
        self.cache_root.mkdir(parents=True, exist_ok=True)
        incoming = self.cache_root / f".incoming-{entry.id}-{secrets.token_hex(4)}"
        incoming.mkdir()
        try:
            for item in entry.files:
                self._download(entry, item, incoming / item.name)
            self._move_into_place(incoming, cached, entry.files)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        return cached

    @staticmethod
    def _move_into_place(incoming: Path, cached: Path, files: tuple[ClassifierFile, ...]) -> None:
        """Rename the checked copy into place. Another process on this host (same DATA_DIR) may have
        put its own there meanwhile: a copy that matches the registration is kept (it may be loading
        from it), one that does not is replaced."""
        for _attempt in range(3):
            try:
                incoming.rename(cached)
                return
            except OSError:
                if _matches(cached, files):
                    return
                shutil.rmtree(cached, ignore_errors=True)
        incoming.rename(cached)

    def _download(self, entry: RegisteredClassifier, item: ClassifierFile, target: Path) -> None:
        async def download(store: BlobStore) -> tuple[str, int]:
            digest = hashlib.sha256()
            size = 0
            with target.open("wb") as handle:
                async for chunk in store.stream(item.key):
                    size += len(chunk)
                    if size > item.size:
                        break  # longer than registered: refused below without reading the rest
                    digest.update(chunk)
                    await asyncio.to_thread(handle.write, chunk)
            return digest.hexdigest(), size

        try:
            sha256, size = self._call(download)
        except BlobNotFound:
            raise ClassifierFilesError(
                f"{item.name} of classifier #{entry.id} is missing from {self.where} ({item.key}); "
                "register it again with `lumi models add-classifier`"
            ) from None
        if (sha256, size) != (item.sha256, item.size):
            raise ClassifierFilesError(
                f"{item.name} of classifier #{entry.id} in {self.where} ({item.key}) is not the file "
                f"registered: {'more than ' if size > item.size else ''}{size} bytes, sha256 {sha256[:12]}…, "
                f"registered {item.size} bytes, sha256 {item.sha256[:12]}… (a partial or replaced upload); "
                "it is not loaded: register it again with `lumi models add-classifier`"
            )


def classifier_file_sweep(
    store: RegistryStore, database: Database, *, interval_s: float
) -> ClassifierFileSweep | None:
    """The sweep of orphaned classifier files for a registry in the blob store; None for a registry in a
    folder (``LocalRegistryStore``), which it does not cover."""
    if not isinstance(store, BlobRegistryStore):
        return None
    return ClassifierFileSweep(store, database, interval_s=interval_s)


class _Loop:
    """An event loop running in a daemon thread of its own; ``call`` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="lumi-classifier-registry", daemon=True
        )
        self._thread.start()

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, _CHUNK):
            yield chunk


def _matches(folder: Path, files: tuple[ClassifierFile, ...]) -> bool:
    try:
        return all(
            (folder / item.name).stat().st_size == item.size
            and file_sha256(folder / item.name) == item.sha256
            for item in files
        )
    except OSError:
        return False
