"""Paths that are not image files, given to `lumi scan` and `lumi comment`: each gets a reason, none is read.

Before the shared check, `lumi comment` waited forever on a named pipe, read a link to /dev/zero until
memory ran out, and read a 4 GB sparse file whole before saying it was too large. The commands run in a
child process, as a user runs them, under a time limit and a 1 GB address-space cap, so a regression
fails the test instead of hanging it or exhausting the machine.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli.input_files import UnreadableInput, read_input_file

ROOT = Path(__file__).resolve().parents[2]
MEMORY_CAP = 1 << 30
LIMIT_S = 60


@pytest.fixture
def hostile(tmp_path: Path) -> dict[str, Path]:
    """A named pipe, a link to an endless device, a 4 GB sparse file, a folder and a missing file."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    paths = {name: folder / name for name in ("pipe.png", "zero.png", "sparse.jpg", "folder.png", "gone.png")}
    os.mkfifo(paths["pipe.png"])
    paths["zero.png"].symlink_to("/dev/zero")
    with paths["sparse.jpg"].open("wb") as sparse:
        sparse.truncate(4 << 30)  # takes no disk space
    paths["folder.png"].mkdir()
    return paths


EXPECTED = {
    "pipe.png": "not a file (a named pipe)",
    "zero.png": "not a file (a device)",
    "sparse.jpg": "larger than the 25 MB limit",
    "folder.png": "not a file (a folder)",
    "gone.png": "file not found",
}


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_lumi(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DISCORD_", "COMMENT_"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "DATA_DIR": str(tmp_path / "data"),
            "INFERENCE_DEVICE": "cpu",
            "COMMENT_OBJECTS_DOWNLOAD": "false",
        }
    )
    try:
        return subprocess.run(
            [sys.executable, "-m", "bot", *args],
            cwd=tmp_path,  # no developer .env
            env=env,
            capture_output=True,
            text=True,
            timeout=LIMIT_S,
            preexec_fn=_capped,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`lumi {args[0]}` was still running after {LIMIT_S} s (reading a pipe or a device?)")


def test_comment_gives_each_path_its_reason(hostile: dict[str, Path], tmp_path: Path) -> None:
    done = run_lumi(tmp_path, "comment", "--json", *map(str, hostile.values()))
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 1  # no input got a comment
    rows = {Path(row["path"]).name: row for row in map(json.loads, done.stdout.splitlines())}
    assert {name: row["error"] for name, row in rows.items()} == EXPECTED


def test_scan_gives_each_path_its_reason(hostile: dict[str, Path], tmp_path: Path) -> None:
    done = run_lumi(tmp_path, "scan", "--json", "--no-custom", *map(str, hostile.values()))
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    results = {Path(row["path"]).name: row for row in json.loads(done.stdout)["results"]}
    # A folder is searched for images; this one has none.
    expected = {name: reason for name, reason in EXPECTED.items() if name != "folder.png"}
    assert {name: row["reason"] for name, row in results.items()} == expected
    assert {row["status"] for row in results.values()} == {"unreadable"}


def test_a_regular_file_is_read_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    data = os.urandom(1 << 20)
    path.write_bytes(data)
    assert read_input_file(path, max_bytes=1 << 20) == data
    with pytest.raises(UnreadableInput, match=r"larger than the 0.5 MB limit"):
        read_input_file(path, max_bytes=1 << 19)
    link = tmp_path / "link.png"
    link.symlink_to(path)  # a link to a regular file is that file
    assert read_input_file(link, max_bytes=1 << 20) == data
