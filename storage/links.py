"""Signed, expiring download tokens for blob keys (`/files/<token>`).

Token: `<payload>.<signature>`, both unpadded URL-safe base64. The payload is `<expiry unix seconds>:<key>`;
the signature is HMAC-SHA256 over a fixed context prefix plus the payload *as transmitted*, so no two
spellings of one token verify, and compared in constant time. Tokens are not encrypted: the key and expiry
are readable by whoever holds the link.

`load_or_create_secret` keeps a generated secret in a file: written whole or not at all (temp file, fsync,
rename) with mode 600, so a full disk or a crash never leaves an empty or world-readable secret behind.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import time
from datetime import datetime
from pathlib import Path

DEFAULT_TTL_S = 7 * 24 * 3600
MIN_SECRET_BYTES = 16
# A key is at most 512 characters (blobs.MAX_KEY_LENGTH), so a genuine token stays under ~760; anything much
# longer is refused before any decoding or hashing.
MAX_TOKEN_CHARS = 1024
GENERATE_SECRET_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"

log = logging.getLogger(__name__)

# Binds signatures to this use, so a secret shared with another feature cannot mint download links there.
_CONTEXT = b"lumi.download-link.v1\x00"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class LinkSecretError(Exception):
    """The link secret file cannot be read, used or written; the message names the file and what to do."""


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
                + GENERATE_SECRET_HINT
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
        if len(token) > MAX_TOKEN_CHARS:
            raise LinkTampered("link token too long")
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


def load_or_create_secret(path: Path) -> str:
    """The link secret kept in `path`; a random one is generated there on first use.

    An empty file (left by an older Lumi that ran out of disk space mid-write) never signed a link, so it is
    replaced by a new secret. A non-empty secret shorter than `MIN_SECRET_BYTES` is refused rather than
    replaced: someone wrote it, and links signed elsewhere with it may matter to them.
    Raises `LinkSecretError` with a sentence naming the file and the way out.
    """
    try:
        stored = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        stored = None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise LinkSecretError(
            f"cannot read the link secret {path} ({reason}); fix or delete that file, or set LINK_SECRET"
        ) from None
    if stored:
        size = len(stored.encode("utf-8"))
        if size < MIN_SECRET_BYTES:
            raise LinkSecretError(
                f"the link secret in {path} is {size} bytes, at least {MIN_SECRET_BYTES} are needed: put a "
                f"longer one there ({GENERATE_SECRET_HINT}), delete the file to have one generated (download "
                "links already sent stop working), or set LINK_SECRET"
            )
        return stored
    value = secrets.token_urlsafe(32)
    _write_atomically(path, value)
    if stored is not None:
        log.warning("the link secret file %s was empty; a new secret was generated there", path)
    return value


def _write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 600, whole or not at all."""
    temp: str | None = None
    try:
        # mkstemp creates the file readable by its owner only, before anything is written to it.
        descriptor, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        temp = None
    except OSError as error:
        raise LinkSecretError(
            f"cannot write the link secret to {path} ({error.strerror or error}); free some disk space or "
            "make DATA_DIR writable by this user, or set LINK_SECRET"
        ) from None
    finally:
        if temp is not None:
            try:
                os.unlink(temp)
            except OSError:
                log.warning("could not remove the unfinished link secret file %s", temp)
