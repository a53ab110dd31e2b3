"""Checks and caps for every value Lumi takes from a Meshy answer.

A Meshy-compatible server is a remote party: it may be a proxy, a misconfigured double or something
worse, and what it sends ends up in the database, in log lines and in Discord messages. Each field is
therefore held to what Meshy itself sends: task ids are short and plain (Meshy's are UUIDs), URLs are
http(s) and of sane length, texts are one line and capped, numbers are finite and in range. A task id
that fails the check makes the answer unreadable (``MeshyProtocolError``); other fields that fail are
dropped or cut, as the parsers already do for fields that drift in shape.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

__all__ = [
    "MAX_ERROR_CHARS",
    "MAX_RESPONSE_BYTES",
    "MAX_TASK_ID_CHARS",
    "MAX_URL_CHARS",
    "bounded_int",
    "clean_text",
    "excerpt",
    "http_url",
    "optional_int",
    "task_id_problem",
    "url_map",
]

MAX_TASK_ID_CHARS: Final = 128
"""Meshy's ids are 36-character UUIDs; the job table keeps 128 characters."""
MAX_URL_CHARS: Final = 4096
"""Signed asset URLs run to about a kilobyte; browsers and proxies stop at a few more."""
MAX_ERROR_CHARS: Final = 500
MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024
"""A list of 50 full tasks is well under 1 MB; anything near this is not an API answer."""
MAX_URL_ENTRIES: Final = 16
_MAX_INT: Final = 2**53
_TASK_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_EXCERPT_CHARS: Final = 120


def excerpt(value: object) -> str:
    """A short, one-line, printable view of ``value`` for error messages and logs."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > _EXCERPT_CHARS:
        return f"{clean_text(text[:_EXCERPT_CHARS], _EXCERPT_CHARS)!r}... ({len(text)} characters)"
    return repr(clean_text(text, _EXCERPT_CHARS))


def task_id_problem(value: object) -> str | None:
    """Why ``value`` is not a task id Lumi accepts, or None when it is one."""
    if not isinstance(value, str) or not value:
        return f"no task id (got {excerpt(value)})"
    if len(value) > MAX_TASK_ID_CHARS:
        return f"a task id of {len(value)} characters (at most {MAX_TASK_ID_CHARS} are accepted)"
    if not _TASK_ID.fullmatch(value):
        return f"a task id with characters other than letters, digits, '-' and '_': {excerpt(value)}"
    return None


def clean_text(value: object, limit: int) -> str:
    """``value`` as one line of at most ``limit`` characters: whitespace runs (newlines included) become
    one space and other control characters are dropped, so a remote text cannot forge log lines."""
    if not isinstance(value, str):
        return ""
    # Cut first: the work below then never runs over more than a bounded text.
    text = value[: limit * 4]
    text = " ".join(text.split())
    text = "".join(char for char in text if char.isprintable())
    return text[:limit]


def http_url(value: object) -> str | None:
    """An absolute http(s) URL of sane length, or None."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_URL_CHARS:
        return None
    url = value.strip()
    if any(not char.isprintable() or char.isspace() for char in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url


def url_map(value: object) -> dict[str, str]:
    """``{name: url}`` entries with short plain names and valid URLs, at most ``MAX_URL_ENTRIES``."""
    if not isinstance(value, Mapping):
        return {}
    urls: dict[str, str] = {}
    for key, raw in value.items():
        url = http_url(raw)
        if url is not None and isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_]{1,32}", key):
            urls[key] = url
            if len(urls) == MAX_URL_ENTRIES:
                break
    return urls


def optional_int(value: object) -> int | None:
    """A finite number (or numeric string) as an int, or None; huge values count as none."""
    if value is None or isinstance(value, bool):
        return None
    number: float
    if isinstance(value, int):
        return value if abs(value) <= _MAX_INT else None
    if isinstance(value, float):
        number = value
    elif isinstance(value, str) and len(value) <= 32:
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return int(number) if math.isfinite(number) and abs(number) <= _MAX_INT else None


def bounded_int(value: object, low: int, high: int, *, default: int | None = None) -> int | None:
    """``optional_int`` clamped to ``low..high`` (``default`` when there is no number)."""
    number = optional_int(value)
    return default if number is None else max(low, min(high, number))
