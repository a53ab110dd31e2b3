"""Blob storage for generated 3D models, previews and moderation evidence.

`BlobStore` is the interface services depend on; `LocalBlobStore` keeps blobs in a folder. Keys are
slash-separated relative names (`jobs/<job id>/model.glb`) made of `[A-Za-z0-9._-]` segments that do not
start with a dot, so a key can never leave the store's root or collide with its bookkeeping folders.

An S3-compatible store (AWS S3, MinIO, Cloudflare R2) would implement the same Protocol with an async client
(aiobotocore) or a sync one in `asyncio.to_thread`:
- keys map to object keys under a configurable prefix; `BlobInfo.sha256` travels as object metadata
  (`x-amz-meta-sha256`) or an S3 SHA-256 checksum, the content type as `Content-Type`;
- `put` is one PutObject; `put_stream` a multipart upload (parts of at least 5 MiB) that is aborted when
  the source fails or `max_bytes` is exceeded, so no partial object ever becomes visible;
- `read`/`stream` are GetObject, streaming the body; `stat`/`exists` are HeadObject (404 -> None/False);
- `delete` is DeleteObject, preceded by HeadObject because S3 reports success for missing keys too;
- objects appear whole on completion, so no temp-file dance is needed; downloads could use presigned URLs
  instead of `storage.links`, at the cost of exposing the bucket's host.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Protocol

DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_KEY_LENGTH = 512  # StoredAsset.key's column size

_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")

# Fixed here rather than left to `mimetypes`, whose answers depend on the host's /etc/mime.types.
_CONTENT_TYPES = {
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".usdz": "model/vnd.usdz+zip",
    ".fbx": "application/octet-stream",
    ".obj": "model/obj",
    ".mtl": "text/plain",
    ".stl": "model/stl",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".mp4": "video/mp4",
    ".json": "application/json",
    ".txt": "text/plain",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"


class BlobError(Exception):
    """Base class for blob store errors."""


class InvalidBlobKey(BlobError, ValueError):
    """The key is not a safe relative name (see the module docstring)."""


class BlobNotFound(BlobError, LookupError):
    """No blob is stored under that key."""


class BlobTooLarge(BlobError, ValueError):
    """`put_stream` received more than `max_bytes`; nothing was stored."""


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    size: int
    content_type: str
    sha256: str


def validate_key(key: str) -> str:
    """Return `key` if it is a safe blob key, else raise `InvalidBlobKey`."""
    if not isinstance(key, str) or not key:
        raise InvalidBlobKey("blob key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidBlobKey(f"blob key longer than {MAX_KEY_LENGTH} characters")
    if _KEY_PATTERN.fullmatch(key) is None:
        raise InvalidBlobKey(
            f"invalid blob key {key!r}: use relative names of [A-Za-z0-9._-] segments joined by '/', "
            "with no segment starting with '.'"
        )
    return key


def guess_content_type(key: str) -> str:
    suffix = os.path.splitext(key)[1].lower()
    if suffix in _CONTENT_TYPES:
        return _CONTENT_TYPES[suffix]
    guessed, _encoding = mimetypes.guess_type(key, strict=True)
    return guessed or DEFAULT_CONTENT_TYPE


class BlobStore(Protocol):
    """Async blob storage. `content_type=None` means "guess from the key's extension"."""

    async def put(self, key: str, data: bytes, content_type: str | None = None) -> BlobInfo: ...

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        content_type: str | None = None,
        *,
        max_bytes: int | None = None,
    ) -> BlobInfo: ...

    async def read(self, key: str) -> bytes: ...

    def stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]: ...

    async def stat(self, key: str) -> BlobInfo | None: ...

    async def delete(self, key: str) -> bool: ...

    async def exists(self, key: str) -> bool: ...


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
        info = BlobInfo(key, len(data), content_type, hashlib.sha256(data).hexdigest())
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
        digest = hashlib.sha256()
        size = 0
        handle: IO[bytes] = await asyncio.to_thread(temp.open, "wb")
        try:
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise BlobTooLarge(f"{key}: more than {max_bytes} bytes")
                    await asyncio.to_thread(_write_and_hash, handle, digest.update, chunk)
                await asyncio.to_thread(_flush_and_sync, handle)
            finally:
                await asyncio.to_thread(handle.close)
            info = BlobInfo(key, size, content_type or guess_content_type(key), digest.hexdigest())
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


def _write_and_hash(handle: IO[bytes], hash_update: Callable[[bytes], object], chunk: bytes) -> None:
    handle.write(chunk)
    hash_update(chunk)


def _flush_and_sync(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())
