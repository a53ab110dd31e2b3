"""Headless Chromium for the tests that need a real browser: the 3D viewer page, the image corpus.

The tests need Debian's `chromium` (`make test` installs it when run as root, through
`scripts/ensure-chromium.sh`); without it they are skipped, unless LUMI_REQUIRE_BROWSER=1 makes that a
failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # WebGL without a GPU: ANGLE's software renderer.
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--window-size=900,700",
    "--virtual-time-budget=15000",
)


def chromium() -> str:
    """The Chromium binary; skips the test without one (fails it under LUMI_REQUIRE_BROWSER=1)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path is not None:
            return path
    reason = "no chromium binary on PATH (apt-get install chromium; `make test` does it as root)"
    if os.environ.get("LUMI_REQUIRE_BROWSER") == "1":
        pytest.fail(f"LUMI_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


async def run_browser(*args: str, profile: Path, timeout_s: float = 90) -> bytes:
    """Run headless Chromium with ``args`` (``--dump-dom URL``, ``--screenshot=...``); its stdout."""
    process = await asyncio.create_subprocess_exec(
        chromium(),
        *BROWSER_FLAGS,
        f"--user-data-dir={profile}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    return stdout
