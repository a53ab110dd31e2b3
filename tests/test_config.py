from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import SettingsError, load_settings
from inference.threads import default_threads


def test_defaults_are_embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    settings = load_settings()
    assert settings.discord_token is None
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.resolved_database_url.endswith("/data/lumi.db")
    assert settings.web_host == "127.0.0.1"
    assert settings.generation_keep_days == 30


def test_env_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("DISCORD_DEV_GUILD_ID=123456789012345678\nWEB_PORT=9999\n")
    settings = load_settings()
    assert settings.discord_dev_guild_id == 123456789012345678
    assert settings.web_port == 9999


def one_line_error(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> str:
    """The `SettingsError` that `variable=value` stops Lumi with, checked to be one line naming it."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert variable in message and "\n" not in message
    return message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WEB_PORT", "http"),
        ("WEB_PORT", "70000"),
        ("DATABASE_URL", "mysql://x"),
        ("LOG_LEVEL", "LOUD"),
        ("DISCORD_DEV_GUILD_ID", "my-guild"),
        ("INFERENCE_THREADS", "0"),
        ("INFERENCE_THREADS", "-2"),
        ("INFERENCE_THREADS", "four"),
        ("GENERATION_KEEP_DAYS", "-1"),
    ],
)
def test_invalid_values_give_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    one_line_error(monkeypatch, variable, value)


def test_inference_threads_default_to_half_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INFERENCE_THREADS", "")  # as `.env.example` leaves it
    assert load_settings().inference_threads == default_threads()
    monkeypatch.setenv("INFERENCE_THREADS", "3")
    assert load_settings().inference_threads == 3


def test_cli_reports_bad_config_without_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "WEB_PORT": "not-a-port", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "db", "current"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "WEB_PORT" in lines[0]


def test_link_secret_is_generated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = load_settings().link_secret_value()
    second = load_settings().link_secret_value()
    assert first == second
    assert len(first) >= 32


@pytest.mark.parametrize(
    ("variable", "value", "hidden"),
    [
        ("LINK_SECRET", "short", "short"),
        ("DATABASE_URL", "mysql://lumi:hunter22@db.example/lumi", "hunter22"),
        ("DATABASE_URL", "postgresql+asyncpg://lumi:hunter22@db.example:notaport/lumi", "hunter22"),
        # An unescaped '@' in the password: none of it may show.
        ("DATABASE_URL", "mysql://lumi:hun@ter22@db.example/lumi", "ter22"),
    ],
)
def test_bad_secrets_and_urls_are_named_without_showing_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, hidden: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert hidden not in one_line_error(monkeypatch, variable, value)


def test_a_short_link_secret_says_how_long_it_must_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LINK_SECRET", "short")
    with pytest.raises(SettingsError, match=r"LINK_SECRET: .*at least 16 bytes, got 5"):
        load_settings()


def test_a_short_link_secret_file_stops_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link_secret").write_text("tiny\n")
    with pytest.raises(SettingsError) as caught:
        load_settings().link_secret_value()
    assert "link_secret is 4 bytes" in str(caught.value)


@pytest.mark.parametrize("layout", ["parent is a file", "data dir is a file"])
def test_a_data_dir_that_cannot_be_created_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    data_dir = tmp_path / "blocker" / "data" if layout == "parent is a file" else tmp_path / "blocker"
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    settings = load_settings()
    for action in (settings.ensure_data_dir, settings.link_secret_value):
        with pytest.raises(SettingsError) as caught:
            action()
        assert str(caught.value).startswith("DATA_DIR: ") and str(data_dir) in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not bind root")
def test_a_read_only_data_dir_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "locked").mkdir(mode=0o500)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "locked" / "data"))
    with pytest.raises(SettingsError, match=r"DATA_DIR: .* cannot be created \(Permission denied\)"):
        load_settings().ensure_data_dir()
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "locked"))
    with pytest.raises(SettingsError, match=r"DATA_DIR: .* is not writable"):
        load_settings().ensure_data_dir()
