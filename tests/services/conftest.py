from __future__ import annotations

from tests.fakes.databases import database, fresh_database, postgres_session_url, sqlite_database

__all__ = ["database", "fresh_database", "postgres_session_url", "sqlite_database"]
