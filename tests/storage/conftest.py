from __future__ import annotations

from tests.fakes.blob_emulators import azurite, moto_s3
from tests.fakes.databases import database, fresh_database, postgres_session_url, sqlite_database

__all__ = ["azurite", "database", "fresh_database", "moto_s3", "postgres_session_url", "sqlite_database"]
