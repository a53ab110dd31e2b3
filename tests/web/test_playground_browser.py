"""The playground in headless Chromium, as a newcomer uses it: a photo judged, a threshold moved, a photo
commented, a 3D job followed to its model, a corrupt file explained.

Driven by Playwright's Python package with Debian's `chromium` (no browser download; `make test`
installs chromium when run as root). Without either the tests are skipped, unless LUMI_REQUIRE_BROWSER=1
makes that a failure. Each card's screenshot is written to LUMI_SCREENSHOTS (a folder) when set, else
into the test's temporary folder; docs/images/ holds two of them for the README.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image
from prometheus_client import REGISTRY

from bot.runtime import Runtime
from bot.web.app import WebServer
from bot.web.generate3d import viewer_assets_installed
from tests.conftest import make_settings
from tests.fakes.images import photo_path
from tests.fakes.meshy_api.server import FakeMeshy, FakeMeshyConfig
from tests.web.test_viewer import chromium

pytestmark = pytest.mark.asyncio(loop_scope="module")

BROWSER_ARGS = ("--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader")
MODEL_WAIT_MS = 180_000  # first use loads the models, on two shared cores


def _playwright() -> Any:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        reason = "Playwright's Python package is not installed (pip install -e '.[dev]')"
        if os.environ.get("LUMI_REQUIRE_BROWSER") == "1":
            pytest.fail(f"LUMI_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return async_playwright


def _photo(name: str) -> Path:
    path = photo_path(name)
    if path is None:
        pytest.skip(f"the package that ships the {name} photo is not installed")
    return path


class Playground:
    def __init__(self, server: WebServer, page: Any, shots: Path) -> None:
        self.server = server
        self.page = page
        self.shots = shots

    async def open(self) -> None:
        await self.page.goto(f"{self.server.url}/")
        await self.page.wait_for_selector("body[data-playground=ready]", timeout=30_000)

    async def shot(self, selector: str, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self.page.locator(selector).screenshot(path=str(path))
        return path


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("LUMI_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def playground(tmp_path_factory: pytest.TempPathFactory, shots: Path) -> AsyncIterator[Playground]:
    executable = chromium()
    async_playwright = _playwright()
    async with FakeMeshy(config=FakeMeshyConfig(preview_s=1.0, refine_s=1.0)) as meshy:
        settings = make_settings(
            tmp_path_factory.mktemp("playground"),
            meshy_api_key=meshy.api_key,
            meshy_base_url=meshy.base_url,
            comment_objects_download=False,
            enhancer_backend="keywords",
            generation_progress_interval_s=0.2,
        )
        runtime = await Runtime.open(settings)
        server = WebServer(runtime, playground_mode=True)
        await server.start()
        try:
            async with async_playwright() as driver:
                browser = await driver.chromium.launch(executable_path=executable, args=list(BROWSER_ARGS))
                page = await browser.new_page(viewport={"width": 1100, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                site = Playground(server, page, shots)
                await site.open()
                yield site
                await browser.close()
                assert errors == [], errors
        finally:
            await server.stop()
            await runtime.close()


def _nudenet_requests() -> float:
    return REGISTRY.get_sample_value("lumi_inference_request_seconds_count", {"model": "nudenet"}) or 0.0


async def test_a_photo_is_judged_and_a_moved_threshold_changes_the_verdict_without_the_models(
    playground: Playground,
) -> None:
    page = playground.page
    await page.set_input_files("#moderation-files", str(_photo("coffee")))
    await page.click("#moderation-submit")
    card = page.locator("#moderation-results .image-card").first
    await card.locator(".verdict.allow").wait_for(timeout=MODEL_WAIT_MS)
    assert await card.get_attribute("data-bot-action") == "allow"
    score_text = await card.locator("tr[data-category=sexual_explicit] td").nth(1).inner_text()
    score = float(score_text)
    assert 0.05 < score < 0.6
    assert await card.locator(".preview.blurred .box").count() >= 1
    await playground.shot("#moderation-card", "moderation")
    before = _nudenet_requests()

    await page.click("#policy-editor summary")
    await page.locator("input[data-category=sexual_explicit][data-threshold=review]").fill(
        f"{score - 0.02:.2f}"
    )
    await card.locator(".verdict.hold").wait_for(timeout=10_000)
    assert "review threshold" in await card.locator(".reason").inner_text()
    assert '"sexual_explicit"' in await page.locator("#policy-json").input_value()
    assert _nudenet_requests() == before, "moving a threshold ran the model again"
    await card.locator(".preview").click()
    assert await card.locator(".preview.blurred").count() == 0
    await playground.shot("#moderation-card", "moderation-stricter")


async def test_a_corrupt_file_shows_the_reason(playground: Playground) -> None:
    page = playground.page
    await page.set_input_files(
        "#moderation-files",
        files=[{"name": "broken.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\nnot an image"}],
    )
    await page.click("#moderation-submit")
    card = page.locator("#moderation-results .image-card[data-status=unreadable]")
    await card.wait_for(timeout=MODEL_WAIT_MS)
    reason = await card.locator(".not-checked-reason").inner_text()
    assert reason.startswith("Not checked: ") and len(reason) > len("Not checked: ") + 5
    assert await card.get_attribute("data-bot-action") == "not checked"


async def test_a_photo_gets_a_comment(playground: Playground) -> None:
    page = playground.page
    await page.select_option("#comments-language", "en")
    await page.set_input_files("#comments-file", str(_photo("astronaut")))
    await page.click("#comments-submit")
    card = page.locator("#comments-result .image-card")
    await card.wait_for(timeout=MODEL_WAIT_MS)
    template = card.locator("[data-backend=template] .comment")
    assert len((await template.inner_text()).strip()) > 5
    assert "ms" in await card.locator("[data-backend=template] .muted").inner_text()
    assert "Labels:" in await card.inner_text()
    await playground.shot("#comments-card", "comments")


async def test_a_prompt_becomes_a_model_with_live_progress(playground: Playground) -> None:
    if not viewer_assets_installed():
        pytest.fail("three.js is missing: run `make install` (npm ci in bot/web/static)")
    page = playground.page
    await page.fill("#prompt-text", "a small wooden treasure chest")
    await page.click("#prompt-check")
    await page.locator("#prompt-verdict[data-allowed=true]").wait_for(timeout=30_000)
    assert len(await page.locator("#prompt-enhanced").inner_text()) > len("a small wooden treasure chest")
    await page.click("#prompt-generate")
    job = page.locator("#job")
    await page.locator("#job[data-job-state=loaded]").wait_for(timeout=90_000)
    seen = [int(value) for value in (await job.get_attribute("data-progress-seen") or "").split(",")]
    assert len(seen) >= 3 and seen == sorted(seen) and seen[-1] == 100
    assert await page.locator("#job-downloads a[download]").count() >= 1
    await page.locator("#jobs li a").first.wait_for(timeout=10_000)
    await page.wait_for_timeout(500)
    shot = await playground.shot("#job-canvas", "generate3d-canvas")
    with Image.open(io.BytesIO(shot.read_bytes())) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000) or []
    background = (0x1F, 0x22, 0x29)
    drawn = sum(
        count
        for count, colour in colours
        if max(abs(a - b) for a, b in zip(colour, background, strict=True)) > 24
    )
    assert len(colours) > 20, "the canvas is blank"
    assert drawn > 0.02 * sum(count for count, _ in colours), "no model visible on the canvas"
    await playground.shot("#generate3d-card", "generate3d")
