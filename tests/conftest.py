from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# ultralytics must never reach the network or install packages during tests.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

from bot.config import Settings
from bot.runtime import Runtime
from inference.tensorflow_support import import_torch_side
from tests.fakes.redis_keys import redis_prefix

__all__ = ["redis_prefix"]

# As `Runtime.open` does for the bot: tests load models in threads without it.
import_torch_side()


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings isolated from the developer's .env and environment-specific ports."""
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "web_host": "127.0.0.1",
        "web_port": 0,
        "link_secret": "test-link-secret-0123456789abcdef",
        "discord_token": None,
        "database_url": "",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = await Runtime.open(settings)
    try:
        yield rt
    finally:
        await rt.close()


@pytest.fixture(scope="session")
def pattern_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Keras classifier flagging stripes (dots are harmless), trained once per test session."""
    from tests.fakes.patterns import train_pattern_classifier

    return train_pattern_classifier(tmp_path_factory.mktemp("pattern-classifier"))
