"""The blob store interface: generated 3D models, previews and moderation evidence.

`BlobStore` is what services depend on; its implementations live in `storage.blob_stores` (a folder under
DATA_DIR, Azure Blob Storage, an S3-compatible bucket), chosen by BLOB_STORE_URL. Keys are slash-separated
relative names (`jobs/<job id>/model.glb`) made of `[A-Za-z0-9._-]` segments that do not start with a dot,
so a key can never leave a folder store's root or collide with its bookkeeping folders, and means the
same object name in every backend.

Every store writes a blob whole or not at all: a reader sees the old blob or the new one, never a part,
and `put_stream` stores nothing when its source fails or passes `max_bytes` (every store reads its source
through `CountedChunks`, which counts, hashes and caps it once for all of them). A remote store that cannot be
reached raises `BlobStoreUnavailable`, an `OSError`, which the web server answers with 503 like a failing
disk.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

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


class BlobConflict(BlobError):
    """A conditional write lost: the blob changed, appeared or went away since its version was read."""


class BlobStoreUnavailable(BlobError, OSError):
    """The store did not answer or refused the request; the message names the store and what failed."""


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    size: int
    content_type: str
    sha256: str


@dataclass(frozen=True, slots=True)
class ListedBlob:
    """One blob as a listing shows it: its key, size and when it was last written (epoch seconds)."""

    key: str
    size: int
    modified: float


@dataclass(frozen=True, slots=True)
class VersionedBlob:
    """A blob's bytes and the version they are (an ETag; opaque, compared for equality only)."""

    data: bytes
    version: str


class CountedChunks:
    """A `put_stream` source as a store reads it: counted and hashed chunk by chunk, and cut off with
    `BlobTooLarge` at the first chunk past `max_bytes`, before that chunk reaches the store."""

    def __init__(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int | None) -> None:
        self.key = key
        self.max_bytes = max_bytes
        self.size = 0
        self._chunks = chunks
        self._digest = hashlib.sha256()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._read()

    async def _read(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            self.size += len(chunk)
            if self.max_bytes is not None and self.size > self.max_bytes:
                raise BlobTooLarge(f"{self.key}: more than {self.max_bytes} bytes")
            self._digest.update(chunk)
            yield chunk

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def info(self, content_type: str) -> BlobInfo:
        """What was read, once the source is exhausted."""
        return BlobInfo(self.key, self.size, content_type, self.sha256)


def blob_info_of(key: str, data: bytes, content_type: str | None = None) -> BlobInfo:
    """What a store records for `data` put whole under `key` (no content type: guessed from the key)."""
    return BlobInfo(key, len(data), content_type or guess_content_type(key), hashlib.sha256(data).hexdigest())


async def sha256_of_stream(chunks: AsyncIterator[bytes]) -> str:
    """The SHA-256 of a blob read back, for one written by something else than Lumi (no hash stored)."""
    digest = hashlib.sha256()
    async for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


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

    async def list_blobs(self, prefix: str) -> list[ListedBlob]:
        """Every blob whose key starts with `prefix` (a folder when it ends with '/'), in no order."""
        ...

    async def read_versioned(self, key: str) -> VersionedBlob | None:
        """The blob and its version, for a later `put_if_version`; None when there is none."""
        ...

    async def put_if_version(
        self, key: str, data: bytes, content_type: str | None = None, *, version: str | None
    ) -> str:
        """Write only if the blob is still at `version` (None: only if there is no blob yet), else raise
        `BlobConflict`; returns the new version. Compare-and-swap for small shared documents."""
        ...

    async def signed_url(
        self, key: str, *, ttl_s: int, filename: str, content_type: str | None = None
    ) -> str | None:
        """A URL the store itself answers with the blob for `ttl_s` seconds (read only), offered as
        `filename`; None when this store has no such URLs (a folder), so the web server streams the blob."""
        ...

    def download_origins(self) -> tuple[str, ...]:
        """The origins (`https://host`) `signed_url`'s URLs point at: the viewer's page must allow them."""
        ...

    async def close(self) -> None: ...


def content_disposition(filename: str) -> str:
    """`inline` with the file's name, encoded for any characters (RFC 6266 / 5987)."""
    return f"inline; filename*=UTF-8''{quote(filename)}"
