"""The 3D job's web side: JSON, Server-Sent Events, and the viewer page rendered by headless Chromium.

The browser test needs Debian's `chromium` (see `tests/fakes/browser.py`); without it the test is
skipped, unless LUMI_REQUIRE_BROWSER=1 makes that a failure.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from bot.runtime import Runtime
from bot.services.generate3d.service import GenerationOptions, GenerationRequest
from bot.web.app import WebServer
from bot.web.generate3d import viewer_assets_installed
from storage.blob_stores import LocalBlobStore
from storage.models import utcnow
from tests.conftest import make_settings
from tests.fakes.browser import chromium, run_browser
from tests.fakes.meshy_api.server import FakeMeshy, FakeMeshyConfig


class DeletesFailOnce(LocalBlobStore):
    """The real blob store, except that the first deletion fails as a full or read-only disk would."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.failed: list[str] = []

    async def delete(self, key: str) -> bool:
        if not self.failed:
            self.failed.append(key)
            raise OSError(f"cannot delete {key}")
        return await super().delete(key)


class Site:
    def __init__(self, runtime: Runtime, server: WebServer, meshy: FakeMeshy) -> None:
        self.runtime = runtime
        self.server = server
        self.meshy = meshy

    async def finished_job(self, prompt: str = "a wooden chair", **options: object) -> str:
        job = await self.runtime.generation.submit(
            GenerationRequest(user_id=1, prompt=prompt, options=GenerationOptions(**options)),  # type: ignore[arg-type]
            checked=True,
        )
        await self.runtime.generation.wait(job.id)
        return job.id


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with FakeMeshy(config=FakeMeshyConfig(preview_s=0.3, refine_s=0.3)) as meshy:
        settings = make_settings(tmp_path, meshy_api_key=meshy.api_key, meshy_base_url=meshy.base_url)
        runtime = await Runtime.open(settings)
        server = WebServer(runtime)
        await server.start()
        try:
            yield Site(runtime, server, meshy)
        finally:
            await server.stop()
            await runtime.close()


async def test_job_json_lists_signed_downloads(site: Site) -> None:
    job_id = await site.finished_job()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{site.server.url}/jobs/{job_id}") as response:
            assert response.status == 200
            body = await response.json()
        assert body["job"]["state"] == "done" and body["job"]["progress"] == 100
        assert body["glb_url"] and body["thumbnail_url"]
        job = await site.runtime.generation.get_job(job_id)
        assert job is not None and job.refine_task_id
        async with http.get(body["glb_url"]) as response:
            assert await response.read() == site.meshy.asset_bytes(job.refine_task_id, "model.glb")
        async with http.get(f"{site.server.url}/jobs/{'0' * 32}") as response:
            assert response.status == 404
        async with http.get(f"{site.server.url}/view/not-a-job") as response:
            assert response.status == 404


async def test_events_stream_progress_until_done(site: Site) -> None:
    site.meshy.config.preview_s = 1.0
    job = await site.runtime.generation.submit(
        GenerationRequest(user_id=1, prompt="a stone tower", options=GenerationOptions(texture=False)),
        checked=True,
    )
    events: list[str] = []
    progress: list[int] = []
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{site.server.url}/jobs/{job.id}/events") as response,
    ):
        assert response.headers["Content-Type"].startswith("text/event-stream")
        async with asyncio.timeout(20):
            async for raw in response.content:
                line = raw.decode().strip()
                if line.startswith("event: "):
                    events.append(line[7:])
                elif line.startswith("data: ") and events[-1] == "progress":
                    progress.append(json.loads(line[6:])["job"]["progress"])
    assert events[-1] == "done"
    assert events.count("progress") >= 3
    assert progress == sorted(progress) and progress[-1] == 100


async def test_expired_files_answer_410_and_the_viewer_says_so(site: Site) -> None:
    job_id = await site.finished_job()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{site.server.url}/jobs/{job_id}") as response:
            before = await response.json()
        assert before["files_expired"] is None and before["glb_url"]

        expired = await site.runtime.generation.purge_expired_files(now=utcnow() + timedelta(days=31))
        assert expired == [job_id]

        async with http.get(before["glb_url"]) as response:
            assert response.status == 410
            assert "expired after 30 days" in await response.text()
        # A link that expired too still explains that the file is gone, not that a new link would help.
        stale = site.runtime.links.sign(f"jobs/{job_id}/model.glb", ttl_s=10, now=time.time() - 60)
        async with http.get(f"{site.server.url}/files/{stale}") as response:
            assert response.status == 410
            assert "expired after 30 days" in await response.text()
        async with http.get(f"{site.server.url}/jobs/{job_id}") as response:
            after = await response.json()
        assert after["job"]["state"] == "done"
        assert after["assets"] == [] and after["glb_url"] is None
        assert "expired after 30 days" in after["files_expired"]
        async with http.get(f"{site.server.url}/view/{job_id}") as response:
            assert response.status == 200
            assert 'id="files-expired"' in await response.text()


async def test_a_blob_whose_deletion_failed_answers_410_and_goes_next_round(site: Site) -> None:
    job_id = await site.finished_job()
    generation = site.runtime.generation
    blobs = DeletesFailOnce(site.runtime.blobs.root)
    generation.file_retention.blobs = blobs
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{site.server.url}/jobs/{job_id}") as response:
            glb_url = (await response.json())["glb_url"]
        later = utcnow() + timedelta(days=31)

        # The job is marked expired, but one blob could not be deleted: its row stays for the next round.
        assert await generation.purge_expired_files(now=later) == []
        [stuck] = blobs.failed
        assert await blobs.exists(stuck)
        async with http.get(f"{site.server.url}/files/{site.runtime.links.sign(stuck)}") as response:
            assert response.status == 410
            assert "expired after 30 days" in await response.text()
        async with http.get(f"{site.server.url}/jobs/{job_id}") as response:
            body = await response.json()
        assert body["assets"] == [] and body["glb_url"] is None and "expired" in body["files_expired"]

        assert await generation.purge_expired_files(now=later) == [job_id]
        assert not await blobs.exists(stuck)
        assert (await generation.result(job_id)).assets == []
        assert await generation.purge_expired_files(now=later) == []
        async with http.get(glb_url) as response:
            assert response.status == 410


async def test_viewer_renders_the_model_in_headless_chromium(site: Site, tmp_path: Path) -> None:
    chromium()
    assert viewer_assets_installed(), "three.js is missing: run `make install` (npm ci in bot/web/static)"
    job_id = await site.finished_job()
    url = f"{site.server.url}/view/{job_id}"

    dom = (await run_browser("--dump-dom", url, profile=tmp_path / "profile-dom")).decode()
    assert 'data-viewer-state="loaded"' in dom, dom[:2000]

    shot = tmp_path / "viewer.png"
    await run_browser(f"--screenshot={shot}", url, profile=tmp_path / "profile-shot")
    with Image.open(io.BytesIO(shot.read_bytes())) as image:
        pixels = image.convert("RGB")
    # The canvas sits left of the downloads panel; sample its middle, where the framed model is.
    width, height = pixels.size
    region = pixels.crop((width // 4, height // 4, width * 3 // 5, height * 3 // 5))
    colours = region.getcolors(maxcolors=1_000_000) or []
    background = (0x1F, 0x22, 0x29)
    off_background = sum(
        count
        for count, colour in colours
        if max(abs(a - b) for a, b in zip(colour, background, strict=True)) > 24
    )
    assert len(colours) > 20, "the canvas is blank"
    assert off_background > region.width * region.height * 0.05, "no model visible in the canvas"
