"""Start-up with a bad link secret file: one line before anything else is opened, or a repaired file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bot.config import SettingsError
from bot.runtime import Runtime
from tests.conftest import make_settings


async def test_an_empty_link_secret_file_no_longer_breaks_start_up(tmp_path: Path) -> None:
    # The 0-byte, world-readable file an interrupted first start used to leave.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "link_secret").write_bytes(b"")
    (data_dir / "link_secret").chmod(0o644)
    runtime = await Runtime.open(make_settings(tmp_path, link_secret=None))
    try:
        token = runtime.download_url("jobs/abc/model.glb").rsplit("/", 1)[-1]
        assert runtime.links.verify(token) == "jobs/abc/model.glb"
    finally:
        await runtime.close()
    secret_file = data_dir / "link_secret"
    assert len(secret_file.read_text()) >= 32
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


async def test_a_short_link_secret_file_stops_start_up_before_the_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "link_secret").write_text("tiny")
    with pytest.raises(SettingsError, match=r"link_secret is 4 bytes, at least 16"):
        await Runtime.open(make_settings(tmp_path, link_secret=None))
    assert not (data_dir / "lumi.db").exists()
    assert (data_dir / "link_secret").read_text() == "tiny"
