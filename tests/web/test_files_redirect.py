"""`/files/<token>` over a remote blob store: Lumi's link decides, then a 302 to a 5-minute SAS on Azurite.

The whole web app runs with BLOB_STORE_URL=azure://<container> against Azurite; the redirect target is
fetched from the emulator, which checks the SAS signature.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from bot.runtime import Runtime
from bot.web.app import WebServer
from bot.web.faults import STORAGE_UNAVAILABLE_TEXT
from storage.blob_stores.azure import AzureBlobStore
from storage.repo import assets as repo_assets
from tests.conftest import make_settings
from tests.fakes.blob_emulators import Azurite, start_azurite, stop_process


async def open_site(tmp_path: Path, azurite: Azurite, **overrides: object) -> tuple[Runtime, WebServer]:
    settings = make_settings(
        tmp_path,
        blob_store_url=f"azure://lumi-web-{secrets.token_hex(4)}",
        azure_storage_connection_string=azurite.connection_string,
        **overrides,
    )
    runtime = await Runtime.open(settings)
    assert isinstance(runtime.blobs, AzureBlobStore)
    await runtime.blobs.create_container()
    server = WebServer(runtime)
    await server.start()
    return runtime, server


@pytest.fixture
async def site(tmp_path: Path, azurite: Azurite) -> AsyncIterator[tuple[Runtime, WebServer]]:
    runtime, server = await open_site(tmp_path, azurite)
    try:
        yield runtime, server
    finally:
        await server.stop()
        await runtime.close()


async def store(runtime: Runtime, key: str, data: bytes, filename: str) -> None:
    info = await runtime.blobs.put(key, data, "model/gltf-binary")
    async with runtime.database.session() as session:
        await repo_assets.record_blob(
            session=session, blob=info, filename=filename, owner_kind="job", owner_id="j"
        )
        await session.commit()


async def test_a_link_redirects_to_a_short_sas_that_serves_the_bytes(
    site: tuple[Runtime, WebServer], azurite: Azurite
) -> None:
    runtime, server = site
    data = bytes(range(256)) * 300
    await store(runtime, "jobs/abc/model.glb", data, "Lamp à poser.glb")
    url = runtime.download_url("jobs/abc/model.glb")
    assert url.startswith(server.url)  # the public link is still Lumi's
    async with aiohttp.ClientSession() as http:
        async with http.get(url, allow_redirects=False) as response:
            assert response.status == 302
            assert response.headers["Cache-Control"] == "no-store"
            location = response.headers["Location"]
            policy = response.headers["Content-Security-Policy"]
        assert location.startswith(f"{azurite.blob_endpoint}/{runtime.blobs.container}/jobs/abc/model.glb?")
        expiry = parse_qs(urlsplit(location).query)["se"][0]
        seconds_left = time.mktime(time.strptime(expiry, "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime())
        assert 240 <= seconds_left <= 301
        # The pages may fetch from the store the links redirect to (the viewer's GLB, the thumbnail).
        assert "connect-src 'self' data: blob: http://127.0.0.1:" in policy

        async with http.get(url) as followed:
            assert followed.status == 200
            assert str(followed.url) == location
            assert await followed.read() == data
            assert followed.headers["Content-Type"] == "model/gltf-binary"
            assert (
                followed.headers["Content-Disposition"]
                == "inline; filename*=UTF-8''Lamp%20%C3%A0%20poser.glb"
            )


async def test_lumis_link_still_decides_403_410_and_404(site: tuple[Runtime, WebServer]) -> None:
    runtime, server = site
    await store(runtime, "jobs/abc/a.glb", b"glTF", "a.glb")
    token = runtime.links.sign("jobs/abc/a.glb")
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    expired = runtime.links.sign("jobs/abc/a.glb", ttl_s=60, now=time.time() - 3600)
    await store(runtime, "jobs/abc/gone.glb", b"glTF", "gone.glb")
    assert await runtime.blobs.delete("jobs/abc/gone.glb") is True
    async with aiohttp.ClientSession() as http:
        for path, status in (
            (flipped, 403),
            (expired, 410),
            (runtime.links.sign("jobs/abc/gone.glb"), 404),
            (runtime.links.sign("jobs/abc/never-stored.glb"), 404),
        ):
            async with http.get(f"{server.url}/files/{path}", allow_redirects=False) as response:
                assert response.status == status, path
                assert "Location" not in response.headers


async def test_blob_redirect_off_streams_through_lumi(tmp_path: Path, azurite: Azurite) -> None:
    runtime, server = await open_site(tmp_path, azurite, blob_redirect=False)
    try:
        data = b"glTF" * 50_000
        await store(runtime, "jobs/abc/model.glb", data, "model.glb")
        async with (
            aiohttp.ClientSession() as http,
            http.get(runtime.download_url("jobs/abc/model.glb"), allow_redirects=False) as response,
        ):
            assert response.status == 200
            assert await response.read() == data
            assert "http://127.0.0.1" not in response.headers["Content-Security-Policy"]
    finally:
        await server.stop()
        await runtime.close()


async def test_a_store_that_stops_answering_gives_503_and_lumi_keeps_serving(tmp_path: Path) -> None:
    emulator = start_azurite()  # its own: this test stops it
    runtime, server = await open_site(tmp_path, emulator)
    try:
        await store(runtime, "jobs/abc/model.glb", b"glTF", "model.glb")
        url = runtime.download_url("jobs/abc/model.glb")
        stop_process(emulator.process)
        async with aiohttp.ClientSession() as http:
            started = time.monotonic()
            async with http.get(url, allow_redirects=False) as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "30"
                assert await response.text() == STORAGE_UNAVAILABLE_TEXT
            assert time.monotonic() - started < 15
            async with http.get(f"{server.url}/healthz") as health:
                assert health.status == 200
        # The row is untouched: the file is served again once the store answers (nothing was deleted).
        async with runtime.database.session() as session:
            assert await repo_assets.get_asset(session=session, key="jobs/abc/model.glb") is not None
    finally:
        stop_process(emulator.process)
        await server.stop()
        await runtime.close()
