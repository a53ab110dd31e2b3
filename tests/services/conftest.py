from __future__ import annotations

from tests.fakes.databases import database, fresh_database, postgres_session_url, sqlite_database
from tests.services.generate3d.parts import env

__all__ = ["database", "env", "fresh_database", "postgres_session_url", "sqlite_database"]
