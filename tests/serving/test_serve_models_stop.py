"""`lumi serve-models` with every family on a 2-CPU cluster: it deploys, and SIGTERM stops it promptly.

Each family's CPU share defaults to what the cluster has (0.5 CPU each for the four families here; one
CPU each left one replica unplaced and the command deploying for ever). Serve's graceful shutdown used to wait
2 s per deployment, one after the other.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_every_family_deploys_on_two_cpus_and_sigterm_stops_it_within_seconds(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray Serve is not installed (the serve extra)")
    env = {
        **os.environ,
        "PYTHONPATH": str(_ROOT),
        "DATA_DIR": str(tmp_path / "data"),
        "SERVE_PORT": str(_free_port()),
        "RAY_DISABLE_USAGE_STATS": "1",
    }
    service = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve-models", "--num-cpus", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert service.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 200
        for line in service.stdout:
            lines.append(line)
            if "Press Ctrl+C" in line or time.monotonic() > deadline:
                break
        announced = "".join(lines)
        assert (
            "moderation 0.5 CPU, perception 0.5 CPU, commenter 0.5 CPU, classifiers 0.5 CPU" in announced
        ), announced[-2000:]
        stopping = time.monotonic()
        service.send_signal(signal.SIGTERM)
        service.communicate(timeout=60)  # reading its output, which it may still be writing
        assert service.returncode == 0
        assert time.monotonic() - stopping < 10.0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
