"""Signed, expiring download tokens for blob keys (`/files/<token>`).

Token: `<payload>.<signature>`, both unpadded URL-safe base64. The payload is `<expiry unix seconds>:<key>`;
the signature is HMAC-SHA256 over a fixed context prefix plus the payload *as transmitted*, so no two
spellings of one token verify, and compared in constant time. Tokens are not encrypted: the key and expiry
are readable by whoever holds the link.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from datetime import datetime

DEFAULT_TTL_S = 7 * 24 * 3600
MIN_SECRET_BYTES = 16

# Binds signatures to this use, so a secret shared with another feature cannot mint download links there.
_CONTEXT = b"lumi.download-link.v1\x00"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class LinkError(Exception):
    """The token cannot be honoured."""


class LinkTampered(LinkError):
    """Malformed token or bad signature: not issued by this secret, or altered since."""


class LinkExpired(LinkError):
    """Genuine token whose expiry has passed."""

    def __init__(self, key: str, expired_at: int) -> None:
        super().__init__(f"link for {key!r} expired at {expired_at}")
        self.key = key
        self.expired_at = expired_at


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _timestamp(now: datetime | float | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return now.timestamp()
    return float(now)


class LinkSigner:
    """Signs blob keys into download tokens and verifies them."""

    def __init__(self, secret: str | bytes, default_ttl_s: int = DEFAULT_TTL_S) -> None:
        secret_bytes = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(secret_bytes) < MIN_SECRET_BYTES:
            raise ValueError(
                f"link secret must be at least {MIN_SECRET_BYTES} bytes (got {len(secret_bytes)}); "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if default_ttl_s <= 0:
            raise ValueError(f"default_ttl_s must be positive, got {default_ttl_s}")
        self._secret = secret_bytes
        self.default_ttl_s = default_ttl_s

    def _signature(self, payload_text: str) -> str:
        mac = hmac.new(self._secret, _CONTEXT + payload_text.encode("ascii"), hashlib.sha256)
        return _b64encode(mac.digest())

    def sign(self, key: str, *, ttl_s: int | None = None, now: datetime | float | None = None) -> str:
        """A token for `key` valid for `ttl_s` seconds (default `default_ttl_s`) from `now`."""
        if not key:
            raise ValueError("cannot sign an empty key")
        ttl = self.default_ttl_s if ttl_s is None else ttl_s
        if ttl <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl}")
        expires = int(_timestamp(now)) + ttl
        payload_text = _b64encode(f"{expires}:{key}".encode())
        return f"{payload_text}.{self._signature(payload_text)}"

    def verify(self, token: str, *, now: datetime | float | None = None) -> str:
        """The key inside a genuine, unexpired token; raises `LinkTampered` or `LinkExpired`."""
        payload_text, dot, signature = token.partition(".")
        if not dot or not _B64URL.fullmatch(payload_text) or not _B64URL.fullmatch(signature):
            raise LinkTampered("malformed link token")
        if not hmac.compare_digest(self._signature(payload_text), signature):
            raise LinkTampered("link signature does not match")
        try:
            expires_text, colon, key = _b64decode(payload_text).decode("utf-8").partition(":")
            expires = int(expires_text)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise LinkTampered("malformed link payload") from None
        if not colon or not key:
            raise LinkTampered("malformed link payload")
        if _timestamp(now) >= expires:
            raise LinkExpired(key, expires)
        return key
