"""The README's first command ends in `lumi run`: without a token it must serve the playground."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _lumi_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """This process's environment without Discord or database settings, with data under `tmp_path`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "DATABASE_URL"))}
    return {**env, "DATA_DIR": str(tmp_path / "data"), **settings}


def _start_until(
    command: list[str], cwd: Path, env: dict[str, str], marker: str
) -> tuple[subprocess.Popen[str], str]:
    """`command` started, and what it printed up to the first line holding `marker` (or its end, or 60 s)."""
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output: list[str] = []
    deadline = time.monotonic() + 60
    try:
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if marker in line:
                break
    except BaseException:
        _kill(process)
        raise
    return process, "".join(output)


def _kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def test_run_without_token_serves_playground_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = _lumi_env(tmp_path, WEB_PORT=str(_free_port()))
    process, text = _start_until([sys.executable, "-m", "bot", "run"], tmp_path, env, "Press Ctrl+C")
    try:
        match = re.search(r"playground mode: (http://\S+)/", text)
        assert match, text
        assert "DISCORD_TOKEN" in text
        with urllib.request.urlopen(f"{match.group(1)}/healthz", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "ok"
        assert (tmp_path / "data" / "lumi.db").exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        _kill(process)


def test_run_with_discord_unreachable_keeps_trying_and_stops_cleanly(tmp_path: Path) -> None:
    launcher = Path(__file__).resolve().parents[1] / "launch_lumi.py"
    env = _lumi_env(
        tmp_path,
        # Port 1 on loopback is closed: every attempt is refused at once.
        LUMI_TEST_DISCORD_URL="http://127.0.0.1:1",
        DISCORD_TOKEN="test-token",
        WEB_PORT="0",
        PYTHONUNBUFFERED="1",
    )
    process, output = _start_until(
        [sys.executable, str(launcher), "run"], tmp_path, env, "cannot reach Discord"
    )
    try:
        assert process.poll() is None, output
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
        text = output + rest
        assert process.returncode == 0, text
        assert "127.0.0.1:1" in text and "trying again in" in text
        assert "Traceback" not in text
    finally:
        _kill(process)
