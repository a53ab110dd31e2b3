"""Meshy HTTP transport on aiohttp: session, authentication, request-level retries and asset downloads.

Retry policy, and why it differs per call:
- reads (GET, list, balance) and DELETE are retried on timeouts, broken connections, 429 rate limits
  (honouring ``Retry-After``) and 5xx, a bounded number of times with jittered exponential backoff;
- task creation is not idempotent on Meshy's side (no idempotency key), so it is retried only when the
  request certainly did not create a task: the connection never opened, a 429 rate limit, or a 5xx
  that Meshy's API itself answered with its JSON error body. A timeout or a proxy's HTML 502 after the
  request was sent may hide a created task, so those surface to the caller instead;
- 429 ``NoMoreConcurrentTasks``/``NoMorePendingTasks`` is never retried here: the account's queue is
  full, and waiting for a slot is the job scheduler's decision, not a request-level retry;
- a timeout is retried at most ``max_timeout_retries`` times (once by default): Meshy answers API calls
  within a second or two, so a server that stays silent twice in a row is not going to answer, and
  every further wait only keeps the person who asked looking at an unchanged progress bar.

Every API answer is read up to ``MAX_RESPONSE_BYTES``; a larger one is not an answer Lumi can use and
is refused (``MeshyProtocolError``) before it fills memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections import Counter
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import aiohttp

from inference.remote.meshy.fields import MAX_RESPONSE_BYTES
from inference.remote.meshy.protocol import (
    DEFAULT_BASE_URL,
    KIND_ASSET,
    decode_json,
    error_for_status,
    error_text,
    parse_retry_after,
    redact_url,
)
from inference.remote.meshy.shapes import (
    MESHY_TEST_MODE_KEY,
    MeshyAssetUnavailable,
    MeshyConnectionError,
    MeshyDownloadTooLarge,
    MeshyError,
    MeshyProtocolError,
    MeshyQueueFull,
    MeshyRateLimited,
    MeshyServerError,
    MeshyTimeout,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for request-level retries.

    Backoff is jittered so that many jobs hitting the same 5xx do not come back in lockstep.
    """

    max_retries: int = 3
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 60.0
    max_timeout_retries: int = 1

    def backoff(self, attempt: int) -> float:
        base = min(self.backoff_max, self.backoff_initial * (2.0**attempt))
        return base * random.uniform(0.75, 1.0)


async def read_capped(response: aiohttp.ClientResponse, *, context: str) -> bytes:
    """The body of an API answer, refused past ``MAX_RESPONSE_BYTES`` without reading the rest."""
    limit = MAX_RESPONSE_BYTES
    too_large = f"Meshy {context}: the answer is larger than {limit // (1024 * 1024)} MB"
    if response.content_length is not None and response.content_length > limit:
        raise MeshyProtocolError(f"{too_large} ({response.content_length} bytes announced)")
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise MeshyProtocolError(too_large)
    return bytes(body)


class MeshyTransport:
    """The HTTP side of ``MeshyClient``: one aiohttp session, auth headers, timeouts and retries.

    ``request_counts`` counts every HTTP request sent, retries included, keyed by ``KIND_*``.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        stream_idle_timeout: float = 45.0,
        download_timeout: float = 300.0,
        retry: RetryPolicy | None = None,
        user_agent: str = "lumi-bot (+meshy client)",
        max_connections: int = 512,
    ) -> None:
        if not api_key:
            raise ValueError("a Meshy API key is required (the test-mode key works for trials)")
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self._timeout_s = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        # Meshy re-sends the task about every 10 s, so silence well beyond that means a dead stream.
        self._stream_idle_timeout = stream_idle_timeout
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout, sock_read=stream_idle_timeout
        )
        self._download_timeout = aiohttp.ClientTimeout(total=download_timeout, sock_read=timeout)
        self.retry = retry or RetryPolicy()
        self._user_agent = user_agent
        self._max_connections = max_connections
        self.request_counts: Counter[str] = Counter()

    # -- lifecycle

    @property
    def is_test_mode(self) -> bool:
        return self._api_key == MESHY_TEST_MODE_KEY

    @property
    def total_requests(self) -> int:
        return sum(self.request_counts.values())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns_session and self._session.closed):
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._max_connections))
            self._owns_session = True
        return self._session

    def _headers(self, accept: str = "application/json") -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": accept,
            "User-Agent": self._user_agent,
        }

    # -- one JSON request with retries

    async def _request_json(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        body: Mapping[str, object] | None = None,
        params: Mapping[str, str] | None = None,
        creates_task: bool = False,
    ) -> object:
        context = f"{method} {path}"
        attempt = timeouts = 0
        while True:
            self.request_counts[kind] += 1
            error: MeshyError
            retry_safe = True
            try:
                async with self._http().request(
                    method,
                    self.base_url + path,
                    json=body,
                    params=params,
                    headers=self._headers(),
                    timeout=self._timeout,
                ) as response:
                    payload = await read_capped(response, context=context)
                    if response.status < 300:
                        return decode_json(payload, context=context)
                    message, from_api = error_text(payload)
                    error = error_for_status(
                        response.status,
                        message,
                        context=context,
                        retry_after=parse_retry_after(response.headers.get("Retry-After")),
                    )
                    if creates_task and response.status >= 500 and not from_api:
                        retry_safe = False
            except aiohttp.ClientConnectorError as exc:
                # The TCP/TLS connection never opened, so nothing reached Meshy: safe to resend.
                error = MeshyConnectionError(f"Meshy {context}: cannot connect: {exc}")
            except TimeoutError:
                error = MeshyTimeout(f"Meshy {context}: no answer within {self._timeout_s:g} s")
                timeouts += 1
                retry_safe = not creates_task and timeouts <= self.retry.max_timeout_retries
            except aiohttp.ClientError as exc:
                error = MeshyConnectionError(f"Meshy {context}: {type(exc).__name__}: {exc}")
                retry_safe = not creates_task
            delay = self._retry_delay(error, attempt)
            if not retry_safe or delay is None:
                raise error
            attempt += 1
            log.warning("%s; retry %d/%d in %.2f s", error.detail, attempt, self.retry.max_retries, delay)
            await asyncio.sleep(delay)

    def _retry_delay(self, error: MeshyError, attempt: int) -> float | None:
        if not error.retryable or isinstance(error, MeshyQueueFull):
            return None
        if attempt >= self.retry.max_retries:
            return None
        if isinstance(error, MeshyRateLimited) and error.retry_after is not None:
            if error.retry_after > self.retry.max_retry_after:
                return None
            return error.retry_after
        return self.retry.backoff(attempt)

    # -- assets

    async def iter_download(
        self, url: str, *, max_bytes: int, chunk_size: int = 64 * 1024
    ) -> AsyncGenerator[bytes, None]:
        """Stream an asset URL in chunks, stopping with ``MeshyDownloadTooLarge`` past ``max_bytes``.

        Asset URLs are pre-signed, so the API key is never sent with them (they may point at another
        host). Not retried, because chunks may already have been consumed; ``download`` retries.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise MeshyAssetUnavailable(f"not an http(s) asset URL: {redact_url(url)!r}")
        safe_url = redact_url(url)
        self.request_counts[KIND_ASSET] += 1
        try:
            async with self._http().get(
                url, timeout=self._download_timeout, headers={"User-Agent": self._user_agent}
            ) as response:
                if response.status >= 500:
                    raise MeshyServerError(
                        f"GET {safe_url} -> HTTP {response.status}", status=response.status
                    )
                if response.status >= 300:
                    raise MeshyAssetUnavailable(
                        f"GET {safe_url} -> HTTP {response.status}", status=response.status
                    )
                if response.content_length is not None and response.content_length > max_bytes:
                    raise MeshyDownloadTooLarge(
                        f"GET {safe_url}: {response.content_length} bytes > limit {max_bytes}"
                    )
                received = 0
                async for chunk in response.content.iter_chunked(chunk_size):
                    received += len(chunk)
                    if received > max_bytes:
                        raise MeshyDownloadTooLarge(f"GET {safe_url}: more than {max_bytes} bytes")
                    yield chunk
        except TimeoutError as exc:
            raise MeshyTimeout(f"GET {safe_url}: download timed out") from exc
        except aiohttp.ClientError as exc:
            raise MeshyConnectionError(f"GET {safe_url}: {type(exc).__name__}: {exc}") from exc

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        """Fetch a whole asset into memory, retrying transient failures like other reads."""
        attempt = 0
        while True:
            buffer = bytearray()
            try:
                async with contextlib.aclosing(self.iter_download(url, max_bytes=max_bytes)) as chunks:
                    async for chunk in chunks:
                        buffer += chunk
                return bytes(buffer)
            except MeshyError as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    raise
                attempt += 1
                log.warning("%s; retry %d/%d in %.2f s", exc.detail, attempt, self.retry.max_retries, delay)
                await asyncio.sleep(delay)

    async def download_to_file(self, url: str, destination: Path, *, max_bytes: int) -> int:
        """Stream an asset to ``destination`` (written off the event loop); returns the byte count.

        Writes to a temporary name and renames at the end, so a failed download leaves no partial file.
        """
        partial = destination.with_name(destination.name + ".part")
        handle = await asyncio.to_thread(partial.open, "wb")
        written = 0
        try:
            async with contextlib.aclosing(self.iter_download(url, max_bytes=max_bytes)) as chunks:
                async for chunk in chunks:
                    await asyncio.to_thread(handle.write, chunk)
                    written += len(chunk)
            await asyncio.to_thread(handle.close)
            await asyncio.to_thread(os.replace, partial, destination)
        except BaseException:
            await asyncio.to_thread(handle.close)
            await asyncio.to_thread(partial.unlink, True)
            raise
        return written
