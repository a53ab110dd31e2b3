"""Download posted images at once, only from allow-listed CDN hosts, with the size capped while streaming.

Discord's attachment links expire, so the bytes are fetched as soon as a message arrives. Only the
configured hosts are ever contacted: a message can point at any URL, and fetching arbitrary ones would
let anyone make the bot request internal addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urljoin, urlsplit

import aiohttp

from bot.services.posts import ImageSource

__all__ = ["DEFAULT_FETCH_HOSTS", "Downloads", "FetchError", "FetchedImage", "ImageFetcher", "megabytes"]

log = logging.getLogger(__name__)

DEFAULT_FETCH_HOSTS: Final = ("cdn.discordapp.com", "media.discordapp.net")
_MAX_REDIRECTS: Final = 3
_CHUNK: Final = 64 * 1024
_MB: Final = 1024 * 1024


def megabytes(size_bytes: int) -> str:
    """A byte count in MB as people write it: "25", "38.2"."""
    return f"{size_bytes / _MB:.1f}".removesuffix(".0")


class FetchError(Exception):
    """The image could not be downloaded. ``message`` is safe to show; ``code`` is for logs and tests.

    A ``too_large`` error also carries the limit and, when the attachment or the server declared it, the
    file's size (None when the download only kept going past the limit).
    """

    def __init__(
        self, code: str, message: str, *, size_bytes: int | None = None, limit_bytes: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes

    def __repr__(self) -> str:
        return f"FetchError({self.code!r}, {self.message!r})"


@dataclass(frozen=True)
class FetchedImage:
    """Downloaded bytes, with what the server said of them and what Discord's attachment metadata said.

    ``declared_type`` and ``declared_dimensions`` come from the attachment (None for links and embeds):
    Discord gives a width and height only to an image its own media service could read, so it shows it.
    """

    url: str
    filename: str
    data: bytes
    content_type: str | None = None
    declared_type: str | None = None
    declared_dimensions: tuple[int, int] | None = None

    @property
    def declared_image(self) -> bool:
        """Discord describes the attachment as an image of a known size, so its clients show it."""
        kind = (self.declared_type or "").split(";")[0].strip().lower()
        size = self.declared_dimensions
        return kind.startswith("image/") and size is not None and size[0] > 0 and size[1] > 0


@dataclass(frozen=True)
class Downloads:
    """What `ImageFetcher.fetch_all` brought back: the images, and (filename, error) for the others."""

    images: list[FetchedImage] = field(default_factory=list)
    failures: list[tuple[str, FetchError]] = field(default_factory=list)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ImageFetcher:
    """``allowed_hosts`` entries are host names, optionally with ``:port``; matching is exact.

    HTTPS is required except for loopback hosts, which only tests and local development use.
    """

    def __init__(
        self,
        *,
        allowed_hosts: Iterable[str] = DEFAULT_FETCH_HOSTS,
        max_bytes: int = 25 * 1024 * 1024,
        timeout_s: float = 15.0,
        max_concurrent: int = 8,
    ) -> None:
        self.allowed_hosts = frozenset(host.strip().lower() for host in allowed_hosts if host.strip())
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._limit = asyncio.Semaphore(max_concurrent)
        self._session: aiohttp.ClientSession | None = None

    def is_allowed(self, url: str) -> bool:
        try:
            self._check_url(url)
        except FetchError:
            return False
        return True

    def _check_url(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            port = parts.port
        except ValueError:
            raise FetchError("bad_url", "The image link is malformed.") from None
        if parts.scheme not in ("https", "http") or not host:
            raise FetchError("bad_url", "Only http(s) image links can be checked.")
        hostport = f"{host}:{port}" if port is not None else host
        if host not in self.allowed_hosts and hostport not in self.allowed_hosts:
            raise FetchError("host_not_allowed", f"Images from {host} are not fetched (not an allowed host).")
        if parts.scheme == "http" and not _is_loopback(host):
            raise FetchError("bad_url", "Image links must use https.")

    def _too_large(self, size_bytes: int | None = None) -> FetchError:
        size = f" ({megabytes(size_bytes)} MB)" if size_bytes is not None else ""
        return FetchError(
            "too_large",
            f"The file{size} is larger than the {megabytes(self.max_bytes)} MB limit.",
            size_bytes=size_bytes,
            limit_bytes=self.max_bytes,
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=min(self.timeout_s, 10.0))
            self._session = aiohttp.ClientSession(timeout=timeout, trust_env=False)
        return self._session

    async def fetch(
        self,
        url: str,
        *,
        filename: str = "",
        declared_size: int | None = None,
        declared_type: str | None = None,
        declared_dimensions: tuple[int, int] | None = None,
    ) -> FetchedImage:
        """The bytes behind ``url``, or ``FetchError`` with a clear message. Never more than ``max_bytes``.

        ``declared_*``: what the attachment's metadata says (size in bytes, content type, width and
        height); the last two are kept on the result.
        """
        self._check_url(url)
        if declared_size is not None and declared_size > self.max_bytes:
            raise self._too_large(declared_size)
        name = filename or urlsplit(url).path.rsplit("/", 1)[-1] or "image"
        async with self._limit:
            try:
                data, content_type = await self._download(url)
            except FetchError:
                raise
            except TimeoutError:
                raise FetchError("timeout", f"The download took longer than {self.timeout_s:g} s.") from None
            except aiohttp.ClientError as error:
                log.info("download of %s failed: %r", url, error)
                raise FetchError("network", "The image could not be downloaded (network error).") from None
        return FetchedImage(
            url=url,
            filename=name,
            data=data,
            content_type=content_type,
            declared_type=declared_type,
            declared_dimensions=declared_dimensions,
        )

    async def fetch_all(self, sources: Sequence[ImageSource]) -> Downloads:
        """Fetch every source at once. Never raises: a failed download is one of the failures."""
        results = await asyncio.gather(
            *(
                self.fetch(
                    s.url,
                    filename=s.filename,
                    declared_size=s.declared_size,
                    declared_type=s.declared_type,
                    declared_dimensions=s.declared_dimensions,
                )
                for s in sources
            ),
            return_exceptions=True,
        )
        downloads = Downloads()
        for source, result in zip(sources, results, strict=True):
            if isinstance(result, FetchedImage):
                downloads.images.append(result)
            elif isinstance(result, FetchError):
                downloads.failures.append((source.filename, result))
            else:
                log.error("fetching %s failed unexpectedly", source.url, exc_info=result)
                downloads.failures.append((source.filename, FetchError("unexpected", "the download failed")))
        return downloads

    async def _download(self, url: str) -> tuple[bytes, str | None]:
        session = self._client()
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            async with session.get(current, allow_redirects=False) as response:
                if response.status in (301, 302, 303, 307, 308):
                    location = response.headers.get("Location", "")
                    current = urljoin(current, location)
                    # A redirect is a new URL: it must pass the same allow-list.
                    self._check_url(current)
                    continue
                if response.status != 200:
                    hint = " (the link may have expired)" if response.status in (403, 404, 410) else ""
                    raise FetchError(
                        "http_status", f"The image could not be downloaded: HTTP {response.status}{hint}."
                    )
                if response.content_length is not None and response.content_length > self.max_bytes:
                    raise self._too_large(response.content_length)
                buffer = bytearray()
                async for chunk in response.content.iter_chunked(_CHUNK):
                    buffer += chunk
                    if len(buffer) > self.max_bytes:
                        raise self._too_large()
                return bytes(buffer), response.content_type or None
        raise FetchError("redirects", "The image link redirects too many times.")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
