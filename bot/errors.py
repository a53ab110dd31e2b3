"""Errors whose message is safe to show to a Discord user."""

from __future__ import annotations


class UserFacingError(Exception):
    """Raised by services; the tree-level error handler shows ``str(error)`` to the user, ephemerally."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
