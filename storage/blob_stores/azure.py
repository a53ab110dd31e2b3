"""`AzureBlobStore`: blobs in an Azure Blob Storage container (`BLOB_STORE_URL=azure://<container>`).

The Protocol maps one to one onto the block blob API: `put` is one upload with the SHA-256 as metadata;
`put_stream` stages blocks and commits the list at the end, so nothing is visible before the commit and a
source that fails or passes `max_bytes` leaves only uncommitted blocks, which the service discards (after
a week at most) and which no read, listing or `stat` ever shows. `signed_url` is a read-only service SAS
signed with the account key, carrying the download's `Content-Disposition`; a connection string without
an account key (a SAS of its own) cannot sign, so the web server streams instead.

Requests wait at most `CONNECT_TIMEOUT_S` for a connection and are retried twice, a second apart, so a
store that is down fails a request in seconds with `BlobStoreUnavailable` instead of the SDK's default
back-off of a minute.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock, BlobSasPermissions, ContentSettings, generate_blob_sas
from azure.storage.blob.aio import BlobClient, ContainerClient, LinearRetry

from storage.blobs import (
    DEFAULT_CHUNK_SIZE,
    BlobConflict,
    BlobInfo,
    BlobNotFound,
    BlobStoreUnavailable,
    CountedChunks,
    ListedBlob,
    VersionedBlob,
    blob_info_of,
    content_disposition,
    guess_content_type,
    sha256_of_stream,
    validate_key,
)

# Staged block size: large enough to keep the block count low (the limit is 50,000 per blob), small
# enough to hold in memory per upload.
BLOCK_SIZE = 4 * 1024 * 1024
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
SHA256_METADATA = "sha256"


def _error_code(error: AzureError) -> str | None:
    # The storage SDK adds the service's error code to its HTTP errors at run time.
    code = getattr(error, "error_code", None)
    return str(code) if code is not None else None


class AzureBlobStore:
    """Blobs in one container, reached with a connection string (an account key lets it sign URLs)."""

    def __init__(self, connection_string: str, container: str) -> None:
        self.container = container
        self._client = ContainerClient.from_connection_string(
            connection_string,
            container,
            retry_policy=LinearRetry(backoff=1, retry_total=2, random_jitter_range=0),
            connection_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
        )
        credential = self._client.credential
        self._account_name: str = self._client.account_name or ""
        self._account_key: str | None = getattr(credential, "account_key", None)

    @property
    def description(self) -> str:
        """Where the blobs are, for log lines and error messages (never the credentials)."""
        return f"Azure Blob Storage container {self.container!r} at {self._client.primary_hostname}"

    @property
    def can_sign(self) -> bool:
        return self._account_key is not None

    def _blob(self, key: str) -> BlobClient:
        return self._client.get_blob_client(validate_key(key))

    def _unavailable(self, action: str, key: str, error: AzureError) -> NoReturn:
        if _error_code(error) == "ContainerNotFound":
            reason = f"the container {self.container!r} does not exist (create it, or fix BLOB_STORE_URL)"
        elif isinstance(error, HttpResponseError) and error.status_code is not None:
            reason = f"HTTP {error.status_code} {_error_code(error) or ''}".rstrip()
        else:
            reason = (str(error.message or error) or type(error).__name__).splitlines()[0][:200]
        raise BlobStoreUnavailable(f"{self.description}: cannot {action} {key!r}: {reason}") from None

    async def put(self, key: str, data: bytes, content_type: str | None = None) -> BlobInfo:
        info = blob_info_of(key, data, content_type)
        blob = self._blob(key)
        try:
            await blob.upload_blob(
                data,
                overwrite=True,
                content_settings=ContentSettings(content_type=info.content_type),
                metadata={SHA256_METADATA: info.sha256},
            )
        except AzureError as error:
            self._unavailable("write", key, error)
        return info

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        content_type: str | None = None,
        *,
        max_bytes: int | None = None,
    ) -> BlobInfo:
        blob = self._blob(key)
        # Unique per upload, so two processes writing one key at once never mix their blocks.
        upload = uuid.uuid4().hex
        blocks: list[BlobBlock] = []
        source = CountedChunks(key, chunks, max_bytes)
        pending = bytearray()

        async def stage(data: bytes) -> None:
            block_id = base64.b64encode(f"{upload}-{len(blocks):06d}".encode()).decode("ascii")
            try:
                await blob.stage_block(block_id, data, length=len(data))
            except AzureError as error:
                self._unavailable("write", key, error)
            blocks.append(BlobBlock(block_id=block_id))

        # Past max_bytes, `source` raises before anything is committed: staged blocks never become a blob.
        async for chunk in source:
            pending += chunk
            while len(pending) >= BLOCK_SIZE:
                await stage(bytes(pending[:BLOCK_SIZE]))
                del pending[:BLOCK_SIZE]
        if pending or not blocks:
            await stage(bytes(pending))
        info = source.info(content_type or guess_content_type(key))
        try:
            await blob.commit_block_list(
                blocks,
                content_settings=ContentSettings(content_type=info.content_type),
                metadata={SHA256_METADATA: info.sha256},
            )
        except AzureError as error:
            self._unavailable("write", key, error)
        return info

    @contextlib.contextmanager
    def _sdk_errors(self, action: str, key: str) -> Iterator[None]:
        """The SDK's errors as the store's: a missing blob is `BlobNotFound`, a missing container and
        the rest unavailable."""
        try:
            yield
        except ResourceNotFoundError as error:
            if _error_code(error) == "ContainerNotFound":
                self._unavailable(action, key, error)
            raise BlobNotFound(key) from None
        except AzureError as error:
            self._unavailable(action, key, error)

    async def read(self, key: str) -> bytes:
        blob = self._blob(key)
        with self._sdk_errors("read", key):
            downloader = await blob.download_blob()
            data = await downloader.readall()
        return data

    async def stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Yield the blob in the SDK's chunks (4 MiB at most); `BlobNotFound` at the first iteration."""
        blob = self._blob(key)
        with self._sdk_errors("read", key):
            downloader = await blob.download_blob()
            async for chunk in downloader.chunks():
                yield chunk

    async def stat(self, key: str) -> BlobInfo | None:
        blob = self._blob(key)
        try:
            with self._sdk_errors("look up", key):
                properties = await blob.get_blob_properties()
        except BlobNotFound:
            return None
        content_type = properties.content_settings.content_type or guess_content_type(key)
        sha256 = (properties.metadata or {}).get(SHA256_METADATA)
        if sha256 is None:
            # Written by something else than Lumi: hash it once, as the folder store does.
            sha256 = await sha256_of_stream(self.stream(key))
        return BlobInfo(key, int(properties.size), content_type, sha256)

    async def delete(self, key: str) -> bool:
        blob = self._blob(key)
        try:
            with self._sdk_errors("delete", key):
                await blob.delete_blob()
        except BlobNotFound:
            return False
        return True

    async def exists(self, key: str) -> bool:
        return await self.stat(key) is not None

    async def list_blobs(self, prefix: str) -> list[ListedBlob]:
        found: list[ListedBlob] = []
        try:
            async for blob in self._client.list_blobs(name_starts_with=prefix):
                found.append(ListedBlob(blob.name, int(blob.size), blob.last_modified.timestamp()))
        except AzureError as error:
            self._unavailable("list", prefix, error)
        return found

    async def read_versioned(self, key: str) -> VersionedBlob | None:
        blob = self._blob(key)
        try:
            with self._sdk_errors("read", key):
                downloader = await blob.download_blob()
                data = await downloader.readall()
        except BlobNotFound:
            return None
        return VersionedBlob(data, str(downloader.properties.etag))

    async def put_if_version(
        self, key: str, data: bytes, content_type: str | None = None, *, version: str | None
    ) -> str:
        blob = self._blob(key)
        options: dict[str, Any] = (
            {"overwrite": False}
            if version is None
            else {"overwrite": True, "etag": version, "match_condition": MatchConditions.IfNotModified}
        )
        sha256 = hashlib.sha256(data).hexdigest()
        try:
            result = await blob.upload_blob(
                data,
                content_settings=ContentSettings(content_type=content_type or guess_content_type(key)),
                metadata={SHA256_METADATA: sha256},
                **options,
            )
        except (ResourceExistsError, ResourceModifiedError):
            raise BlobConflict(f"{key}: changed since version {version}") from None
        except ResourceNotFoundError as error:
            if _error_code(error) == "ContainerNotFound":
                self._unavailable("write", key, error)
            raise BlobConflict(f"{key}: deleted since version {version}") from None
        except AzureError as error:
            self._unavailable("write", key, error)
        return str(result["etag"])

    async def signed_url(
        self, key: str, *, ttl_s: int, filename: str, content_type: str | None = None
    ) -> str | None:
        if self._account_key is None:
            return None
        blob = self._blob(key)
        options: dict[str, Any] = {"content_disposition": content_disposition(filename)}
        if content_type:
            options["content_type"] = content_type
        sas = generate_blob_sas(
            account_name=self._account_name,
            container_name=self.container,
            blob_name=key,
            account_key=self._account_key,
            permission=BlobSasPermissions(read=True),
            expiry=datetime.now(UTC) + timedelta(seconds=ttl_s),
            **options,
        )
        return f"{blob.url}?{sas}"

    def download_origins(self) -> tuple[str, ...]:
        parts = urlsplit(self._client.url)
        return (f"{parts.scheme}://{parts.netloc}",)

    async def create_container(self) -> None:
        """Create the container if it is missing (tests, first set-up); another process may win the race."""
        try:
            if not await self._client.exists():
                await self._client.create_container()
        except ResourceExistsError:
            return
        except AzureError as error:
            self._unavailable("create", self.container, error)

    async def close(self) -> None:
        await self._client.close()
