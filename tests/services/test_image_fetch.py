from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bot.services.image_fetch import FetchError, ImageFetcher
from tests.fakes.cdn import serving_attachments

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100


class Cdn:
    """A local CDN double: good files plus the misbehaviours the fetcher must survive."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.base = ""
        self.host = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        name = request.match_info["name"]
        if name == "ok.png":
            return web.Response(body=PNG, content_type="image/png")
        if name == "gone.png":
            return web.Response(status=404, text="expired")
        if name == "huge-declared.png":
            response = web.StreamResponse(headers={"Content-Length": str(10_000_000)})
            await response.prepare(request)
            return response
        if name == "endless.png":
            # No Content-Length: only the streaming cap stops it.
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(1000):
                await response.write(b"x" * 65536)
            return response
        if name == "slow.png":
            await asyncio.sleep(5)
            return web.Response(body=PNG)
        if name == "hop.png":
            raise web.HTTPFound(f"{self.base}/attachments/ok.png")
        if name == "escape.png":
            raise web.HTTPFound("http://169.254.169.254/latest/meta-data")
        return web.Response(status=500)


@pytest.fixture
async def cdn() -> AsyncIterator[Cdn]:
    state = Cdn()
    async with serving_attachments(state.handle) as host:
        state.host, state.base = host, f"http://{host}"
        yield state


@pytest.fixture
async def fetcher(cdn: Cdn) -> AsyncIterator[ImageFetcher]:
    instance = ImageFetcher(allowed_hosts=[cdn.host], max_bytes=1024 * 1024, timeout_s=1.0)
    try:
        yield instance
    finally:
        await instance.close()


async def test_allowed_host_is_fetched(cdn: Cdn, fetcher: ImageFetcher) -> None:
    image = await fetcher.fetch(f"{cdn.base}/attachments/ok.png?ex=1&is=2")
    assert image.data == PNG
    assert image.filename == "ok.png"
    assert image.content_type == "image/png"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://evil.example/a.png", "host_not_allowed"),
        ("http://cdn.discordapp.com/a.png", "host_not_allowed"),
        ("ftp://127.0.0.1/a.png", "bad_url"),
        ("not a url", "bad_url"),
        ("http://[::1/a.png", "bad_url"),
    ],
)
async def test_other_hosts_are_never_contacted(cdn: Cdn, fetcher: ImageFetcher, url: str, code: str) -> None:
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(url)
    assert caught.value.code == code
    assert not fetcher.is_allowed(url)
    assert cdn.hits == []


async def test_default_hosts_require_https() -> None:
    fetcher = ImageFetcher()
    assert fetcher.is_allowed("https://cdn.discordapp.com/attachments/1/2/a.png")
    assert fetcher.is_allowed("https://media.discordapp.net/attachments/1/2/a.png?width=10")
    assert not fetcher.is_allowed("http://cdn.discordapp.com/attachments/1/2/a.png")
    assert not fetcher.is_allowed("https://cdn.discordapp.com.evil.example/a.png")


@pytest.mark.parametrize(
    ("name", "code", "text"),
    [
        ("gone.png", "http_status", "HTTP 404 (the link may have expired)"),
        ("huge-declared.png", "too_large", "1 MB limit"),
        ("endless.png", "too_large", "1 MB limit"),
        ("slow.png", "timeout", "longer than 1 s"),
        ("escape.png", "host_not_allowed", "169.254.169.254"),
        ("broken.png", "http_status", "HTTP 500"),
    ],
)
async def test_failures_are_clear(cdn: Cdn, fetcher: ImageFetcher, name: str, code: str, text: str) -> None:
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(f"{cdn.base}/attachments/{name}")
    assert caught.value.code == code
    assert text in caught.value.message


async def test_redirect_within_allowed_hosts_is_followed(cdn: Cdn, fetcher: ImageFetcher) -> None:
    image = await fetcher.fetch(f"{cdn.base}/attachments/hop.png")
    assert image.data == PNG
    assert cdn.hits == ["/attachments/hop.png", "/attachments/ok.png"]


async def test_declared_size_over_the_cap_is_refused_without_a_request(
    cdn: Cdn, fetcher: ImageFetcher
) -> None:
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(f"{cdn.base}/attachments/ok.png", declared_size=50 * 1024 * 1024)
    assert caught.value.code == "too_large"
    assert cdn.hits == []


async def test_unreachable_host_is_a_network_error() -> None:
    fetcher = ImageFetcher(allowed_hosts=["127.0.0.1:9"], timeout_s=2.0)
    try:
        with pytest.raises(FetchError) as caught:
            await fetcher.fetch("http://127.0.0.1:9/a.png")
        assert caught.value.code == "network"
    finally:
        await fetcher.close()
