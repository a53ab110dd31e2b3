"""Problems moderators should fix (permissions, a missing channel), shown in `/moderation status`.

Each guild keeps its latest few, the oldest dropped first.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from datetime import datetime

from storage.models import utcnow

__all__ = ["ProblemLog"]

log = logging.getLogger(__name__)

_MAX_PROBLEMS = 20


class ProblemLog:
    """The latest problems of each guild."""

    def __init__(self) -> None:
        self._problems: dict[int, deque[tuple[datetime, str]]] = defaultdict(
            lambda: deque(maxlen=_MAX_PROBLEMS)
        )

    def report(self, guild_id: int, text: str) -> None:
        log.warning("moderation problem in guild %s: %s", guild_id, text)
        self._problems[guild_id].append((utcnow(), text))

    def of_guild(self, guild_id: int) -> list[tuple[datetime, str]]:
        return list(self._problems.get(guild_id, ()))
