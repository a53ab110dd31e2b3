"""`S3BlobStore`: blobs in an S3-compatible bucket (`BLOB_STORE_URL=s3://<bucket>/<prefix>`).

AWS S3, MinIO, Cloudflare R2 and the like, through aiobotocore:
- keys map to object keys under the URL's prefix; the SHA-256 travels as `x-amz-meta-sha256`, the content
  type as `Content-Type`;
- `put` is one PutObject; `put_stream` buffers up to `PART_SIZE` and sends a small blob as one PutObject, a
  larger one as a multipart upload that is aborted when the source fails or passes `max_bytes`, so no
  partial object ever becomes visible (objects appear whole on completion);
- `read`/`stream` are GetObject; `stat`/`exists` HeadObject (404 -> None/False); `delete` is HeadObject
  then DeleteObject, since S3 answers a deletion of a missing key with success too;
- `signed_url` is a presigned GetObject with the download's `Content-Disposition`.

The client is created at first use (it needs the running event loop) and closed by `close`. Credentials
come from S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY when set, else from botocore's usual chain (AWS_*
variables, the instance's role).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, NoReturn
from urllib.parse import urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

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

# S3's smallest part but the last; the buffer per upload.
PART_SIZE = 5 * 1024 * 1024
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
SHA256_METADATA = "sha256"
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


class S3BlobStore:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        self._options: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region_name": region or None,
            "aws_access_key_id": access_key_id or None,
            "aws_secret_access_key": secret_access_key or None,
            "config": AioConfig(
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                retries={"max_attempts": 3, "mode": "standard"},
                signature_version="s3v4",
            ),
        }
        self._client: Any = None
        self._exit_stack = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()

    @property
    def description(self) -> str:
        where = self.endpoint_url or "AWS"
        return f"S3 bucket {self.bucket!r} at {where}"

    async def _s3(self) -> Any:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    session = get_session()
                    creator = session.create_client("s3", **self._options)
                    self._client = await self._exit_stack.enter_async_context(creator)
        return self._client

    def _object_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _unavailable(self, action: str, key: str, error: Exception) -> NoReturn:
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                reason = f"the bucket {self.bucket!r} does not exist (create it, or fix BLOB_STORE_URL)"
            else:
                reason = f"HTTP {status} {code}".rstrip()
        else:
            reason = (str(error) or type(error).__name__).splitlines()[0][:200]
        raise BlobStoreUnavailable(f"{self.description}: cannot {action} {key!r}: {reason}") from None

    @staticmethod
    def _missing(error: ClientError) -> bool:
        return str(error.response.get("Error", {}).get("Code", "")) in _MISSING_CODES

    async def put(self, key: str, data: bytes, content_type: str | None = None) -> BlobInfo:
        object_key = self._object_key(key)
        info = blob_info_of(key, data, content_type)
        try:
            s3 = await self._s3()
            await s3.put_object(
                Bucket=self.bucket,
                Key=object_key,
                Body=data,
                ContentType=info.content_type,
                Metadata={SHA256_METADATA: info.sha256},
            )
        except (ClientError, BotoCoreError) as error:
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
        object_key = self._object_key(key)
        content_type = content_type or guess_content_type(key)
        source = CountedChunks(key, chunks, max_bytes)
        pending = bytearray()
        upload = _MultipartUpload(self, key, object_key, content_type)
        try:
            async for chunk in source:
                pending += chunk
                while len(pending) >= 2 * PART_SIZE:
                    # Keep at least one part back: the last part carries the hash, known only at the end.
                    await upload.send(bytes(pending[:PART_SIZE]))
                    del pending[:PART_SIZE]
            info = source.info(content_type)
            if not upload.started:
                return await self.put(key, bytes(pending), content_type)
            await upload.send(bytes(pending))
            await upload.complete(info.sha256)
            return info
        except BaseException:
            await upload.abort()
            raise

    @contextlib.contextmanager
    def _sdk_errors(self, action: str, key: str) -> Iterator[None]:
        """The SDK's errors as the store's: a missing object is `BlobNotFound`, the rest unavailable."""
        try:
            yield
        except ClientError as error:
            if self._missing(error):
                raise BlobNotFound(key) from None
            self._unavailable(action, key, error)
        except BotoCoreError as error:
            self._unavailable(action, key, error)

    async def read(self, key: str) -> bytes:
        object_key = self._object_key(key)
        with self._sdk_errors("read", key):
            s3 = await self._s3()
            response = await s3.get_object(Bucket=self.bucket, Key=object_key)
            async with response["Body"] as body:
                data = bytes(await body.read())
        return data

    async def stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        object_key = self._object_key(key)
        with self._sdk_errors("read", key):
            s3 = await self._s3()
            response = await s3.get_object(Bucket=self.bucket, Key=object_key)
            async with response["Body"] as body:
                while chunk := await body.read(chunk_size):
                    yield bytes(chunk)

    async def stat(self, key: str) -> BlobInfo | None:
        object_key = self._object_key(key)
        try:
            with self._sdk_errors("look up", key):
                s3 = await self._s3()
                head = await s3.head_object(Bucket=self.bucket, Key=object_key)
        except BlobNotFound:
            return None
        sha256 = (head.get("Metadata") or {}).get(SHA256_METADATA)
        if sha256 is None:
            # Written by something else than Lumi: hash it once, as the folder store does.
            sha256 = await sha256_of_stream(self.stream(key))
        content_type = head.get("ContentType") or guess_content_type(key)
        return BlobInfo(key, int(head["ContentLength"]), content_type, sha256)

    async def delete(self, key: str) -> bool:
        object_key = self._object_key(key)
        if await self.stat(key) is None:
            return False
        try:
            s3 = await self._s3()
            await s3.delete_object(Bucket=self.bucket, Key=object_key)
        except (ClientError, BotoCoreError) as error:
            self._unavailable("delete", key, error)
        return True

    async def exists(self, key: str) -> bool:
        return await self.stat(key) is not None

    async def list_blobs(self, prefix: str) -> list[ListedBlob]:
        above = f"{self.prefix}/" if self.prefix else ""
        found: list[ListedBlob] = []
        try:
            s3 = await self._s3()
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=above + prefix)
            async for page in pages:
                for item in page.get("Contents", []):
                    key = str(item["Key"])[len(above) :]
                    found.append(ListedBlob(key, int(item["Size"]), item["LastModified"].timestamp()))
        except (ClientError, BotoCoreError) as error:
            self._unavailable("list", prefix, error)
        return found

    async def read_versioned(self, key: str) -> VersionedBlob | None:
        object_key = self._object_key(key)
        try:
            with self._sdk_errors("read", key):
                s3 = await self._s3()
                response = await s3.get_object(Bucket=self.bucket, Key=object_key)
                async with response["Body"] as body:
                    data = bytes(await body.read())
        except BlobNotFound:
            return None
        return VersionedBlob(data, str(response["ETag"]))

    async def put_if_version(
        self, key: str, data: bytes, content_type: str | None = None, *, version: str | None
    ) -> str:
        object_key = self._object_key(key)
        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        try:
            s3 = await self._s3()
            response = await s3.put_object(
                Bucket=self.bucket,
                Key=object_key,
                Body=data,
                ContentType=content_type or guess_content_type(key),
                Metadata={SHA256_METADATA: hashlib.sha256(data).hexdigest()},
                **condition,
            )
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409"):
                raise BlobConflict(f"{key}: changed since version {version}") from None
            self._unavailable("write", key, error)
        except BotoCoreError as error:
            self._unavailable("write", key, error)
        return str(response["ETag"])

    async def signed_url(
        self, key: str, *, ttl_s: int, filename: str, content_type: str | None = None
    ) -> str | None:
        params = {
            "Bucket": self.bucket,
            "Key": self._object_key(key),
            "ResponseContentDisposition": content_disposition(filename),
        }
        if content_type:
            params["ResponseContentType"] = content_type
        s3 = await self._s3()
        url: str = await s3.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl_s)
        return url

    def download_origins(self) -> tuple[str, ...]:
        # botocore addresses the bucket by path or by host name, depending on the endpoint and bucket name.
        if self.endpoint_url:
            parts = urlsplit(self.endpoint_url)
            return (f"{parts.scheme}://{parts.netloc}", f"{parts.scheme}://{self.bucket}.{parts.netloc}")
        region = self.region or "us-east-1"
        return (f"https://{self.bucket}.s3.amazonaws.com", f"https://{self.bucket}.s3.{region}.amazonaws.com")

    async def create_bucket(self) -> None:
        """Create the bucket if it is missing (for tests and first set-up)."""
        try:
            s3 = await self._s3()
            with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                await s3.create_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as error:
            self._unavailable("create", self.bucket, error)

    async def close(self) -> None:
        await self._exit_stack.aclose()
        self._client = None


class _MultipartUpload:
    """One multipart upload, begun at its first part; `abort` throws away what was sent."""

    def __init__(self, store: S3BlobStore, key: str, object_key: str, content_type: str) -> None:
        self.store = store
        self.key = key
        self.object_key = object_key
        self.content_type = content_type
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    @property
    def started(self) -> bool:
        return self.upload_id is not None

    async def send(self, data: bytes) -> None:
        store = self.store
        try:
            s3 = await store._s3()
            if self.upload_id is None:
                # The hash is only known at the end, and S3 takes metadata only here: it is set again
                # by the copy in `complete`.
                created = await s3.create_multipart_upload(
                    Bucket=store.bucket, Key=self.object_key, ContentType=self.content_type
                )
                self.upload_id = str(created["UploadId"])
            number = len(self.parts) + 1
            part = await s3.upload_part(
                Bucket=store.bucket,
                Key=self.object_key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,
            )
            self.parts.append({"ETag": part["ETag"], "PartNumber": number})
        except (ClientError, BotoCoreError) as error:
            store._unavailable("write", self.key, error)

    async def complete(self, sha256: str) -> None:
        store = self.store
        try:
            s3 = await store._s3()
            await s3.complete_multipart_upload(
                Bucket=store.bucket,
                Key=self.object_key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
            self.upload_id = None
            await s3.copy_object(
                Bucket=store.bucket,
                Key=self.object_key,
                CopySource={"Bucket": store.bucket, "Key": self.object_key},
                MetadataDirective="REPLACE",
                ContentType=self.content_type,
                Metadata={SHA256_METADATA: sha256},
            )
        except (ClientError, BotoCoreError) as error:
            store._unavailable("write", self.key, error)

    async def abort(self) -> None:
        if self.upload_id is None:
            return
        upload_id, self.upload_id = self.upload_id, None
        with contextlib.suppress(ClientError, BotoCoreError):
            s3 = await self.store._s3()
            await s3.abort_multipart_upload(Bucket=self.store.bucket, Key=self.object_key, UploadId=upload_id)
