"""The blob stores behind `storage.blobs.BlobStore`: a folder, Azure Blob Storage, an S3-compatible bucket.

`open_blob_store` builds the one BLOB_STORE_URL names (`urls`); the remote stores' modules, and their
SDKs, are imported only when chosen.
"""

from __future__ import annotations

from storage.blob_stores.local import LocalBlobStore
from storage.blob_stores.urls import (
    BlobStoreLocation,
    BlobStoreSettings,
    blob_store_problem,
    open_blob_store,
    parse_blob_store_url,
)

__all__ = [
    "BlobStoreLocation",
    "BlobStoreSettings",
    "LocalBlobStore",
    "blob_store_problem",
    "open_blob_store",
    "parse_blob_store_url",
]
