"""What keeps the playground's API safe to leave open on a laptop: same-origin POSTs, a per-client rate
limit, answers in JSON, and a Content-Security-Policy that lets only Lumi's own scripts run.

- A POST must come from a page of this server: its ``Origin`` (sent by every browser on a POST) must be
  this server's address or ``PUBLIC_BASE_URL``; without one, ``Sec-Fetch-Site: same-origin`` must say
  so. Another site's page cannot make a visitor's browser run models or start 3D jobs here (no CSRF).
- Each client address may send ``PLAYGROUND_RATE_LIMIT`` POSTs (a moving window, kept in memory);
  polling the status (GET) is not counted. Behind a reverse proxy every visitor shares its address.
- Errors come back as ``{"error": "..."}`` with the reason in words; a bug is logged and answered
  with a sentence, never a traceback.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from bot.errors import UserFacingError
from bot.web.headers import script_hash

__all__ = [
    "RateLimit",
    "content_security_policy",
    "error_middleware",
    "json_error",
    "rate_limit_middleware",
    "same_origin_middleware",
]

log = logging.getLogger(__name__)

_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def json_error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def content_security_policy(*inline_scripts: str) -> str:
    """Only Lumi's own scripts (plus the exact inline blocks given, by hash: the import map three.js
    needs), images from Lumi, data: previews and blob: textures, no framing by other sites."""
    hashes = " ".join(script_hash(text) for text in inline_scripts)
    script_src = f"'self' {hashes}".strip()
    return (
        f"default-src 'none'; script-src {script_src}; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self' blob:; font-src 'self'; form-action 'self'; base-uri 'none'; "
        "object-src 'none'; frame-ancestors 'none'"
    )


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin_middleware(
    public_base_url: Callable[[], str],
) -> Middleware:
    """Refuses POSTs (and any other unsafe method) that do not come from this server's own pages."""

    @web.middleware
    async def same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in _SAFE_METHODS:
            return await handler(request)
        allowed = {f"{request.scheme}://{request.host}".lower()}
        public = _origin_of(public_base_url())
        if public is not None:
            allowed.add(public)
        origin = request.headers.get("Origin")
        if origin is not None:
            if origin.lower() not in allowed:
                return json_error(
                    403, "This request came from another site; use the playground page on this server."
                )
        elif request.headers.get("Sec-Fetch-Site") != "same-origin":
            return json_error(
                403, "This request does not say it comes from the playground page (no Origin header)."
            )
        return await handler(request)

    return same_origin


class RateLimit:
    """A moving window of requests per client address, in memory (one process)."""

    def __init__(self, rate: str) -> None:
        self.item: RateLimitItem = parse(rate)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, client: str) -> float | None:
        """None when ``client`` may go on, else the seconds until it may try again."""
        if self.limiter.hit(self.item, "playground", client):
            return None
        stats = self.limiter.get_window_stats(self.item, "playground", client)
        return max(1.0, stats.reset_time - time.time())

    def describe(self) -> str:
        per = self.item.get_expiry()
        return f"{self.item.amount} requests per {per} s"


def rate_limit_middleware(
    limit: RateLimit,
) -> Middleware:
    @web.middleware
    async def rate_limited(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in _SAFE_METHODS:
            return await handler(request)
        wait_s = limit.hit(request.remote or "unknown")
        if wait_s is not None:
            seconds = math.ceil(wait_s)
            return json_error(
                429,
                f"Too many requests from this address ({limit.describe()}); try again in {seconds} s.",
                **{"Retry-After": str(seconds)},
            )
        return await handler(request)

    return rate_limited


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer of the API is JSON, and never "no store" is forgotten: results are one person's."""
    try:
        response = await handler(request)
    except UserFacingError as error:
        return json_error(400, error.message)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return json_error(error.status, error.text or error.reason)
    except Exception:
        log.exception("playground request %s %s failed", request.method, request.path)
        return json_error(500, "Something went wrong in Lumi; the details are in its log.")
    response.headers.setdefault("Cache-Control", "no-store")
    return response
