"""The hostile image corpus is what it claims: headless Chromium shows every edited photo.

Each file is loaded as an ``<img>`` and drawn on a canvas: the browser must give it its natural width
and height, and the top tenth of the picture (present in every edit, even those cut short) must hold
real photo content, not a blank box. Without Chromium the test is skipped, unless
LUMI_REQUIRE_BROWSER=1 makes that a failure (see ``tests/fakes/browser.py``).
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.browser import chromium, run_browser
from tests.fakes.hostile_images import SHOWN, SHOWN_NOT_DECODED, Edit

_MIME = {b"\xff\xd8": "image/jpeg", b"\x89P": "image/png", b"GI": "image/gif", b"RI": "image/webp"}
# Each <img> measures itself once the page has loaded: its natural size, and how many opaque pixels and
# distinct colours the top tenth of it has once drawn (data: URLs do not taint the canvas).
_MEASURE = """
window.addEventListener("load", () => {
  const results = {};
  for (const img of document.images) {
    const found = {width: img.naturalWidth, height: img.naturalHeight, opaque: 0, colours: 0};
    if (img.naturalWidth > 0) {
      const canvas = document.createElement("canvas");
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
      const context = canvas.getContext("2d");
      context.drawImage(img, 0, 0);
      const band = Math.max(1, Math.floor(canvas.height / 10));
      const pixels = context.getImageData(0, 0, canvas.width, band).data;
      const colours = new Set();
      for (let i = 0; i < pixels.length; i += 4) {
        if (pixels[i + 3] > 0) found.opaque++;
        colours.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
      }
      found.colours = colours.size;
      found.band_pixels = canvas.width * band;
    }
    results[img.dataset.name] = found;
  }
  document.getElementById("results").textContent = JSON.stringify(results);
});
"""


def _page(files: dict[str, bytes]) -> str:
    images = "\n".join(
        f'<img data-name="{html.escape(name)}" '
        f'src="data:{_MIME[data[:2]]};base64,{base64.b64encode(data).decode()}">'
        for name, data in files.items()
    )
    body = f'{images}<pre id="results"></pre><script>{_MEASURE}</script>'
    return f"<!doctype html><html><body>{body}</body></html>"


async def _shown_by_chromium(files: dict[str, bytes], tmp_path: Path) -> dict[str, dict[str, Any]]:
    page = tmp_path / "corpus.html"
    page.write_text(_page(files))
    dom = (await run_browser("--dump-dom", page.as_uri(), profile=tmp_path / "profile")).decode()
    found = re.search(r'<pre id="results">(.*?)</pre>', dom, re.DOTALL)
    assert found is not None and found.group(1), dom[-2000:]
    results: dict[str, dict[str, Any]] = json.loads(html.unescape(found.group(1)))
    return results


def _built(edits: tuple[Edit, ...]) -> dict[str, bytes]:
    files = {}
    for edit in edits:
        data = edit.build()
        if data is None:
            pytest.skip(f"the package that ships the {edit.photo} photo is not installed")
        files[edit.name] = data
    return files


async def test_chromium_shows_every_edited_photo(tmp_path: Path) -> None:
    chromium()
    files = _built(SHOWN + SHOWN_NOT_DECODED)
    shown = await _shown_by_chromium(files, tmp_path)
    assert set(shown) == set(files)
    for name, result in shown.items():
        assert result["width"] > 0 and result["height"] > 0, (name, result)
        # A photo's top tenth, fully drawn: opaque, with over a hundred colours (a grey box has one, and
        # the GIF has 256 at most).
        assert result["opaque"] == result["band_pixels"], (name, result)
        assert result["colours"] > 100, (name, result)


async def test_the_measure_tells_a_broken_file_from_a_shown_one(tmp_path: Path) -> None:
    """The browser check can fail: a JPEG cut inside its header is not shown at all."""
    chromium()
    (rocket,) = _built(SHOWN[:1]).values()
    shown = await _shown_by_chromium({"header_only": rocket[:300], "whole": rocket + b"\xff\xd9"}, tmp_path)
    assert shown["header_only"]["width"] == 0
    assert shown["whole"]["width"] > 0 and shown["whole"]["colours"] > 100
