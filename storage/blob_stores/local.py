"""`LocalBlobStore`: blobs as files in a folder, DATA_DIR/blobs when BLOB_STORE_URL is empty."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from storage.blobs import (
    DEFAULT_CHUNK_SIZE,
    BlobConflict,
    BlobInfo,
    BlobNotFound,
    CountedChunks,
    ListedBlob,
    VersionedBlob,
    blob_info_of,
    guess_content_type,
    validate_key,
)


class LocalBlobStore:
    """Blobs as files under `root`, written atomically (temp file, fsync, rename) off the event loop.

    Layout: `root/<key>` holds the bytes, `root/.meta/<key>.json` the content type and SHA-256 (with the
    size and mtime they describe, so a stale sidecar is detected and recomputed), `root/.tmp/` unfinished
    writes. Keys cannot start a segment with '.', so they never reach the two bookkeeping folders.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._meta_root = self.root / ".meta"
        self._tmp_root = self.root / ".tmp"

    def path(self, key: str) -> Path:
        """The file holding `key` (for `sendfile`-style responses); it may not exist."""
        return self.root / validate_key(key)

    def _meta_path(self, key: str) -> Path:
        return self._meta_root / f"{key}.json"

    async def put(self, key: str, data: bytes, content_type: str | None = None) -> BlobInfo:
        validate_key(key)
        return await asyncio.to_thread(self._write_whole, key, data, content_type or guess_content_type(key))

    def _write_whole(self, key: str, data: bytes, content_type: str) -> BlobInfo:
        info = blob_info_of(key, data, content_type)
        temp = self._new_temp_path()
        try:
            with temp.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self._commit(temp, info)
        finally:
            temp.unlink(missing_ok=True)
        return info

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        content_type: str | None = None,
        *,
        max_bytes: int | None = None,
    ) -> BlobInfo:
        validate_key(key)
        temp = await asyncio.to_thread(self._new_temp_path)
        source = CountedChunks(key, chunks, max_bytes)
        handle: IO[bytes] = await asyncio.to_thread(temp.open, "wb")
        try:
            try:
                async for chunk in source:
                    await asyncio.to_thread(handle.write, chunk)
                await asyncio.to_thread(_flush_and_sync, handle)
            finally:
                await asyncio.to_thread(handle.close)
            info = source.info(content_type or guess_content_type(key))
            await asyncio.to_thread(self._commit, temp, info)
            return info
        finally:
            # Also runs on cancellation; unlinking a file is quick enough to do on the loop.
            temp.unlink(missing_ok=True)

    def _new_temp_path(self) -> Path:
        self._tmp_root.mkdir(parents=True, exist_ok=True)
        return self._tmp_root / f"{uuid.uuid4().hex}.part"

    def _commit(self, temp: Path, info: BlobInfo) -> None:
        target = self.root / info.key
        target.parent.mkdir(parents=True, exist_ok=True)
        stat = temp.stat()
        meta = {**asdict(info), "mtime_ns": stat.st_mtime_ns}
        meta_path = self._meta_path(info.key)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_temp = self._new_temp_path()
        try:
            meta_temp.write_text(json.dumps(meta), encoding="utf-8")
            # Sidecar first: if the process dies between the two renames, the sidecar describes a file
            # that is not there yet, which `stat` notices by size/mtime and recomputes.
            os.replace(meta_temp, meta_path)
        finally:
            meta_temp.unlink(missing_ok=True)
        os.replace(temp, target)

    async def read(self, key: str) -> bytes:
        path = self.path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None

    async def stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Yield the blob in chunks; `BlobNotFound` is raised at the first iteration."""
        path = self.path(key)
        try:
            handle: IO[bytes] = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def stat(self, key: str) -> BlobInfo | None:
        path = self.path(key)
        return await asyncio.to_thread(self._stat, key, path)

    def _stat(self, key: str, path: Path) -> BlobInfo | None:
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        meta = self._read_meta(key)
        if meta is not None and meta.get("size") == stat.st_size and meta.get("mtime_ns") == stat.st_mtime_ns:
            return BlobInfo(key, stat.st_size, str(meta["content_type"]), str(meta["sha256"]))
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return BlobInfo(key, stat.st_size, guess_content_type(key), digest.hexdigest())

    def _read_meta(self, key: str) -> dict[str, Any] | None:
        try:
            meta = json.loads(self._meta_path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    async def delete(self, key: str) -> bool:
        path = self.path(key)
        return await asyncio.to_thread(self._delete, key, path)

    def _delete(self, key: str, path: Path) -> bool:
        self._meta_path(key).unlink(missing_ok=True)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    async def exists(self, key: str) -> bool:
        path = self.path(key)
        return await asyncio.to_thread(path.is_file)

    async def list_blobs(self, prefix: str) -> list[ListedBlob]:
        if prefix.rstrip("/"):
            validate_key(prefix.rstrip("/"))  # a prefix cannot reach outside the folder either
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> list[ListedBlob]:
        # Only the folder the prefix names is walked; keys never start a segment with '.'.
        folder = self.root / prefix.rpartition("/")[0]
        found: list[ListedBlob] = []
        for directory, subfolders, names in os.walk(folder):
            subfolders[:] = [name for name in subfolders if not name.startswith(".")]
            for name in names:
                path = Path(directory) / name
                key = path.relative_to(self.root).as_posix()
                if name.startswith(".") or not key.startswith(prefix):
                    continue
                with contextlib.suppress(FileNotFoundError):  # deleted while the folder was walked
                    stat = path.stat()
                    found.append(ListedBlob(key, stat.st_size, stat.st_mtime))
        return found

    async def read_versioned(self, key: str) -> VersionedBlob | None:
        try:
            data = await self.read(key)
        except BlobNotFound:
            return None
        return VersionedBlob(data, hashlib.sha256(data).hexdigest())

    async def put_if_version(
        self, key: str, data: bytes, content_type: str | None = None, *, version: str | None
    ) -> str:
        validate_key(key)
        return await asyncio.to_thread(self._put_if_version, key, data, content_type, version)

    def _put_if_version(self, key: str, data: bytes, content_type: str | None, version: str | None) -> str:
        # The version is the content's SHA-256; an exclusive lock makes compare and write one step for
        # every process sharing this folder.
        self._tmp_root.mkdir(parents=True, exist_ok=True)
        with (self._tmp_root / "versioned.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    current: str | None = hashlib.sha256(self.path(key).read_bytes()).hexdigest()
                except (FileNotFoundError, NotADirectoryError):
                    current = None
                if current != version:
                    raise BlobConflict(f"{key}: changed since version {version}")
                return self._write_whole(key, data, content_type or guess_content_type(key)).sha256
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    async def signed_url(
        self, key: str, *, ttl_s: int, filename: str, content_type: str | None = None
    ) -> str | None:
        # A folder has no web server of its own: Lumi's streams the file.
        return None

    def download_origins(self) -> tuple[str, ...]:
        return ()

    async def close(self) -> None:
        return None


def _flush_and_sync(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())
