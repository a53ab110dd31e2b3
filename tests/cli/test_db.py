"""`lumi db upgrade|current` on a broken database: one line saying where and what to check, nothing lost.

Often a newcomer's first command, so each fault a fresh machine can have is tried: a server that is not
running, a damaged SQLite file, a missing or unusable DATA_DIR, a full disk.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def _lumi_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one `lumi:` line on stderr (log lines from the migration runner may come before it)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("lumi: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("action", ["upgrade", "current"])
def test_a_server_that_is_not_running_is_one_line_without_the_password(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    # Port 1 on loopback is closed: refused at once.
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://lumi:hunter22@127.0.0.1:1/lumi")
    assert main(["db", action]) == 2
    line = _lumi_line(capsys)
    assert "127.0.0.1:1" in line and "server is running" in line
    assert "hunter22" not in line


@pytest.mark.parametrize("action", ["upgrade", "current"])
def test_a_damaged_sqlite_file_is_one_line_and_kept_as_it_was(
    workdir: Path, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    (workdir / "data").mkdir()
    damaged = b"not a database, whatever its name says\n" * 200
    (workdir / "data" / "lumi.db").write_bytes(damaged)
    assert main(["db", action]) == 2
    line = _lumi_line(capsys)
    assert "lumi.db" in line and "damaged" in line
    assert (workdir / "data" / "lumi.db").read_bytes() == damaged


def test_current_with_a_missing_data_dir_says_so_and_creates_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "current"]) == 2
    assert "no such directory" in _lumi_line(capsys)
    assert not (workdir / "data").exists()


@pytest.mark.parametrize("action", ["upgrade", "current"])
def test_a_data_dir_under_a_file_is_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    (workdir / "blocker").write_text("a file where a folder should be")
    monkeypatch.setenv("DATA_DIR", str(workdir / "blocker" / "data"))
    assert main(["db", action]) == 2
    assert str(workdir / "blocker") in _lumi_line(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not bind root")
def test_a_read_only_data_dir_is_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "locked").mkdir(mode=0o500)
    monkeypatch.setenv("DATA_DIR", str(workdir / "locked"))
    assert main(["db", "upgrade"]) == 2
    assert "DATA_DIR" in _lumi_line(capsys)


def test_an_unknown_revision_is_one_line(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "no-such-revision"]) == 2
    assert "Can't locate revision" in _lumi_line(capsys)


def test_upgrade_then_current_still_work(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert "upgraded to head" in capsys.readouterr().out
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.strip().startswith("0003")


def _full_disk() -> None:
    # A file-size limit behaves as a full disk for the child: writes past it fail with EFBIG.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_a_full_disk_on_first_start_is_one_line(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "LINK_SECRET"))},
        "DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", "bot", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        preexec_fn=_full_disk,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("lumi: ")]
    assert len(lines) == 1, result.stderr
    assert "lumi.db" in lines[0] and "disk may be full" in lines[0]
