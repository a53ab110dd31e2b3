"""Security headers on every response, and the inline scripts the Content-Security-Policy allows."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from bot.runtime import Runtime
from bot.services.generate3d.service import GenerationOptions, GenerationRequest
from bot.web.app import WebServer
from bot.web.headers import content_security_policy, inline_script_hashes
from bot.web.playground.page import PAGE_POLICY
from tests.conftest import make_settings
from tests.fakes.meshy_api.server import FakeMeshy, FakeMeshyConfig


async def test_every_response_carries_the_security_headers(runtime: Runtime, server: WebServer) -> None:
    await runtime.blobs.put("jobs/abc/model.glb", b"glTF", "model/gltf-binary")
    paths = ["/", "/healthz", f"/jobs/{'0' * 32}", "/no-such-page", "/static/gen3d/viewer.js"]
    async with aiohttp.ClientSession() as http:
        for path in [*paths, runtime.download_url("jobs/abc/model.glb").removeprefix(server.url)]:
            async with http.get(f"{server.url}{path}") as response:
                headers = response.headers
                assert headers["Server"] == "Lumi", path
                assert "aiohttp" not in headers["Server"] and "Python" not in headers["Server"]
                # The playground page has a stricter policy of its own (no inline script, no inline style).
                expected = PAGE_POLICY if path == "/" else content_security_policy()
                assert headers["Content-Security-Policy"] == expected, path
                assert "frame-ancestors 'none'" in expected, path
                assert headers["X-Content-Type-Options"] == "nosniff", path
                assert headers["X-Frame-Options"] == "DENY", path
                assert headers["Referrer-Policy"] == "no-referrer", path
    policy = content_security_policy()
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]


async def test_the_pages_inline_scripts_are_exactly_those_the_policy_allows(tmp_path: Path) -> None:
    async with FakeMeshy(config=FakeMeshyConfig(preview_s=0.1, refine_s=0.1)) as meshy:
        settings = make_settings(tmp_path, meshy_api_key=meshy.api_key, meshy_base_url=meshy.base_url)
        site = await Runtime.open(settings)
        web_server = WebServer(site)
        await web_server.start()
        try:
            job = await site.generation.submit(
                GenerationRequest(user_id=1, prompt="a teapot", options=GenerationOptions(texture=False)),
                checked=True,
            )
            viewer = f"{web_server.url}/view/{job.id}"
            async with aiohttp.ClientSession() as http, http.get(viewer) as response:
                assert response.status == 200
                page = await response.text()
                policy = response.headers["Content-Security-Policy"]
        finally:
            await web_server.stop()
            await site.close()
    hashes = inline_script_hashes(page)
    assert len(hashes) == 2  # the import map and the "viewer could not start" fallback
    script_sources = policy.split("script-src", 1)[1].split(";", 1)[0]
    for source in hashes:
        assert source in script_sources
    # A script injected into the page's content would not be on the list.
    assert inline_script_hashes("<script>alert(1)</script>")[0] not in policy
