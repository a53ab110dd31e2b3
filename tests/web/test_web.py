from __future__ import annotations

import hashlib
import time

import aiohttp

from bot.runtime import Runtime
from bot.web.app import WebServer
from storage.repo import assets as repo_assets


async def _store(runtime: Runtime, key: str, data: bytes, content_type: str, filename: str) -> None:
    info = await runtime.blobs.put(key, data, content_type)
    async with runtime.database.session() as session:
        await repo_assets.add_asset(
            session=session,
            key=key,
            content_type=content_type,
            size=info.size,
            sha256=info.sha256,
            filename=filename,
            owner_kind="job",
            owner_id="test",
        )
        await session.commit()


async def test_healthz_reports_database(server: WebServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/healthz") as response:
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "ok"
    assert body["database"] == {"backend": "sqlite", "ok": True}
    assert body["version"]


async def test_metrics_is_prometheus_text(server: WebServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    assert "# HELP" in text and "# TYPE" in text
    assert "python_info" in text or "process_" in text


async def test_playground_page_explains_missing_token(server: WebServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert "DISCORD_TOKEN" in page
    assert "/healthz" in page


async def test_signed_link_streams_the_stored_bytes(runtime: Runtime, server: WebServer) -> None:
    data = bytes(range(256)) * 1000  # larger than one stream chunk
    await _store(runtime, "jobs/abc/model.glb", data, "model/gltf-binary", "model.glb")
    url = runtime.download_url("jobs/abc/model.glb")
    assert url.startswith(server.url)
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "model/gltf-binary"
        assert "model.glb" in response.headers["Content-Disposition"]
        body = await response.read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()


async def test_tampered_link_is_forbidden(runtime: Runtime, server: WebServer) -> None:
    await _store(runtime, "jobs/abc/a.obj", b"v 0 0 0\n", "text/plain", "a.obj")
    token = runtime.links.sign("jobs/abc/a.obj")
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    other_key = runtime.links.sign("jobs/abc/other.obj")
    async with aiohttp.ClientSession() as http:
        for bad in (flipped, "not-a-token", other_key[: len(other_key) // 2] + token[len(token) // 2 :]):
            async with http.get(f"{server.url}/files/{bad}") as response:
                assert response.status == 403, bad


async def test_expired_link_is_gone(runtime: Runtime, server: WebServer) -> None:
    await _store(runtime, "jobs/abc/old.obj", b"v 0 0 0\n", "text/plain", "old.obj")
    token = runtime.links.sign("jobs/abc/old.obj", ttl_s=60, now=time.time() - 3600)
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/files/{token}") as response:
        assert response.status == 410
        assert "expired" in (await response.text()).lower()


async def test_link_to_deleted_blob_is_not_found(runtime: Runtime, server: WebServer) -> None:
    await _store(runtime, "jobs/abc/gone.obj", b"v 0 0 0\n", "text/plain", "gone.obj")
    await runtime.blobs.delete("jobs/abc/gone.obj")
    url = runtime.download_url("jobs/abc/gone.obj")
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 404
