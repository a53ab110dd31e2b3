"""Waiting in tests for what other tasks or processes do without signalling it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(check: Callable[[], bool], describe: str, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Return once `check()` holds; fail naming `describe` when it still does not after `timeout`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {describe}")
        await asyncio.sleep(0.02)
