"""The blob store settings: which store BLOB_STORE_URL names, its credentials, and how downloads reach it.

A part of `bot.config.Settings` (which inherits it and builds `storage.blob_stores.BlobStoreSettings`
from it); the names, environment variables and defaults are `Settings`' own. What the URL may be, and what
each store needs, is checked in `storage.blob_stores.urls`.
"""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings

__all__ = ["BlobStoreFields"]


class BlobStoreFields(BaseSettings):
    # Where files are kept (storage/blob_stores/urls.py): empty = DATA_DIR/blobs, azure://<container>,
    # s3://<bucket>[/<prefix>]; the credentials each needs follow.
    blob_store_url: str = ""
    azure_storage_connection_string: SecretStr | None = None
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr | None = None
    # /files/<token> answers with a redirect to a 5-minute URL of the remote store (false: streams it).
    blob_redirect: bool = True
