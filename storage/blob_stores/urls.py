"""BLOB_STORE_URL: which store holds Lumi's blobs, read from the URL and the settings beside it.

- empty: a folder, DATA_DIR/blobs (`LocalBlobStore`);
- `azure://<container>`: Azure Blob Storage, reached with AZURE_STORAGE_CONNECTION_STRING;
- `s3://<bucket>` or `s3://<bucket>/<prefix>`: an S3-compatible bucket, at S3_ENDPOINT_URL (AWS when
  empty), with S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY or botocore's usual credentials.

`blob_store_problem` checks the settings without connecting (one line naming the variable, for the
settings' validation); `open_blob_store` builds the store, importing only the SDK it needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from storage.blobs import BlobStore

BlobBackend = Literal["local", "azure", "s3"]
USAGE = (
    "use azure://<container> or s3://<bucket>[/<prefix>], or leave it empty for files under DATA_DIR/blobs"
)

# Azure: 3-63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit.
_AZURE_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
# S3: 3-63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit.
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_S3_PREFIX = re.compile(r"[A-Za-z0-9._/-]*")


@dataclass(frozen=True)
class BlobStoreLocation:
    backend: BlobBackend
    name: str = ""  # the container or bucket
    prefix: str = ""

    @property
    def is_remote(self) -> bool:
        return self.backend != "local"


@dataclass(frozen=True)
class BlobStoreSettings:
    url: str = ""
    data_dir: Path = Path("data")
    azure_connection_string: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""


def parse_blob_store_url(url: str) -> BlobStoreLocation:
    """Where BLOB_STORE_URL points; `ValueError` with a sentence for anything else."""
    text = url.strip()
    if not text:
        return BlobStoreLocation("local")
    parts = urlsplit(text)
    if parts.scheme == "azure":
        container = parts.netloc
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError(f"{text!r}: an Azure URL names only the container (azure://<container>)")
        if not _AZURE_CONTAINER.fullmatch(container):
            raise ValueError(
                f"{container!r} is not an Azure container name (3-63 lower-case letters, digits and "
                "single hyphens)"
            )
        return BlobStoreLocation("azure", container)
    if parts.scheme == "s3":
        bucket, prefix = parts.netloc, parts.path.strip("/")
        if parts.query or parts.fragment:
            raise ValueError(f"{text!r}: an S3 URL is s3://<bucket>[/<prefix>], without ? or #")
        if not _S3_BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ValueError(
                f"{bucket!r} is not an S3 bucket name (3-63 lower-case letters, digits, . and -)"
            )
        if not _S3_PREFIX.fullmatch(prefix) or "//" in prefix:
            raise ValueError(f"prefix {prefix!r}: use [A-Za-z0-9._-] segments joined by '/'")
        return BlobStoreLocation("s3", bucket, prefix)
    raise ValueError(f"{text!r}: {USAGE}")


def _connection_string_problem(connection_string: str) -> str | None:
    fields = {}
    for part in connection_string.split(";"):
        name, equals, value = part.strip().partition("=")
        if equals:
            fields[name.strip().lower()] = value.strip()
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        return None
    if not fields.get("accountname") and not fields.get("blobendpoint"):
        return "names no AccountName or BlobEndpoint"
    if not fields.get("accountkey") and not fields.get("sharedaccesssignature"):
        return "has neither AccountKey nor SharedAccessSignature"
    return None


def blob_store_problem(settings: BlobStoreSettings) -> str | None:
    """Why these settings cannot make a blob store, in one line naming the variable; None when they can."""
    try:
        location = parse_blob_store_url(settings.url)
    except ValueError as error:
        return f"BLOB_STORE_URL: {error}"
    if location.backend == "azure":
        if not settings.azure_connection_string.strip():
            return (
                f"BLOB_STORE_URL={settings.url.strip()} needs AZURE_STORAGE_CONNECTION_STRING (the storage "
                "account's connection string, from the portal's Access keys)"
            )
        problem = _connection_string_problem(settings.azure_connection_string)
        if problem is not None:
            return f"AZURE_STORAGE_CONNECTION_STRING: the connection string {problem}"
    if location.backend == "s3":
        if bool(settings.s3_access_key_id.strip()) != bool(settings.s3_secret_access_key.strip()):
            return (
                "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY: set both, or neither (botocore's own credentials)"
            )
        endpoint = settings.s3_endpoint_url.strip()
        if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
            return f"S3_ENDPOINT_URL: {endpoint!r} is not an http(s) URL"
    return None


def open_blob_store(settings: BlobStoreSettings) -> BlobStore:
    """The store BLOB_STORE_URL names; nothing is contacted until the first request."""
    problem = blob_store_problem(settings)
    if problem is not None:
        raise ValueError(problem)
    location = parse_blob_store_url(settings.url)
    if location.backend == "azure":
        from storage.blob_stores.azure import AzureBlobStore

        return AzureBlobStore(settings.azure_connection_string.strip(), location.name)
    if location.backend == "s3":
        from storage.blob_stores.s3 import S3BlobStore

        return S3BlobStore(
            location.name,
            location.prefix,
            endpoint_url=settings.s3_endpoint_url.strip() or None,
            region=settings.s3_region.strip() or None,
            access_key_id=settings.s3_access_key_id.strip() or None,
            secret_access_key=settings.s3_secret_access_key.strip() or None,
        )
    from storage.blob_stores.local import LocalBlobStore

    return LocalBlobStore(settings.data_dir / "blobs")
