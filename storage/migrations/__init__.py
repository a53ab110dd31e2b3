"""Alembic migration environment; a package so the migrations ship inside an installed wheel."""
