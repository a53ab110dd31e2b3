"""Persistence: SQLModel tables, async engine, queries, blob store and signed links."""
