"""A gateway with INFERENCE_URL opens its Runtime without importing torch: its models run in the service.

In a fresh process, since the test session itself imports torch at start (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
# Not through tests.conftest, which imports torch itself.
_OPEN_RUNTIME = """
import asyncio, json, sys
from pathlib import Path
from bot.config import Settings
from bot.runtime import Runtime

async def main():
    settings = Settings(
        _env_file=None,
        data_dir=Path(sys.argv[1]) / "data",
        link_secret="test-link-secret-0123456789abcdef",
        discord_token=None,
        database_url="",
        inference_url=sys.argv[2],
    )
    runtime = await Runtime.open(settings)
    await runtime.close()

asyncio.run(main())
print(json.dumps({"torch": "torch" in sys.modules, "tensorflow": "tensorflow" in sys.modules}))
"""


def _modules_after_open(tmp_path: Path, inference_url: str) -> dict[str, bool]:
    completed = subprocess.run(
        [sys.executable, "-c", _OPEN_RUNTIME, str(tmp_path), inference_url],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=_ROOT,
        env={**os.environ, "PYTHONPATH": str(_ROOT)},
        check=True,
    )
    result: dict[str, bool] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def test_a_remote_gateway_imports_neither_torch_nor_tensorflow(tmp_path: Path) -> None:
    assert _modules_after_open(tmp_path, "http://127.0.0.1:9") == {"torch": False, "tensorflow": False}


def test_an_embedded_gateway_still_imports_torch_first(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    assert _modules_after_open(tmp_path, "")["torch"] is True
