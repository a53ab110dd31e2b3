from __future__ import annotations

from bot.config import Settings, load_settings
from bot.logging_setup import configure_logging


def settings_and_logging(**overrides: object) -> Settings:
    settings = load_settings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    return settings
