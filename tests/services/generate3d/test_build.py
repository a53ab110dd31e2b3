"""`build.generation_config`: the 3D block of Settings read once into the config the service and cog use."""

from __future__ import annotations

from pathlib import Path

from bot.services.generate3d.build import generation_config
from bot.services.generate3d.config import GenerationConfig
from tests.conftest import make_settings


def test_the_config_defaults_are_the_settings_defaults(tmp_path: Path) -> None:
    # Tests and benchmarks build GenerationConfig() directly; it must behave as an unconfigured Lumi.
    assert generation_config(make_settings(tmp_path)) == GenerationConfig()


def test_the_settings_the_cog_used_to_read_come_with_the_config(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        generation_interaction_ttl_s=60.0,
        generation_progress_interval_s=0.5,
        generation_cleanup_interval_s=120.0,
        generation_max_asset_mb=1.5,
        generation_keep_days=0,
    )
    config = generation_config(settings)
    assert (config.interaction_ttl_s, config.progress_interval_s, config.cleanup_interval_s) == (
        60.0,
        0.5,
        120.0,
    )
    assert config.max_asset_bytes == 1_572_864 and config.keep_days == 0
