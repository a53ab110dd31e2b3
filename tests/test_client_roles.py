"""Which work a LumiBot does follows its roles and its shard plan (the processes themselves: e2e)."""

from __future__ import annotations

from pathlib import Path

from bot.client import LumiBot
from bot.identify import LocalPacing, RedisIdentifyLock
from tests.conftest import make_settings

DISTRIBUTED: dict[str, object] = {
    "lumi_mode": "distributed",
    "database_url": "postgresql+asyncpg://lumi@db.internal:5432/lumi",
    "redis_url": "redis://127.0.0.1:6379/15",
    "lumi_shared_data_dir": True,
}


async def test_an_embedded_bot_does_every_role_and_no_shard_plan(tmp_path: Path) -> None:
    bot = LumiBot(make_settings(tmp_path), extensions=())
    assert [role for role in ("gateway", "worker", "web") if bot.runs(role)] == ["gateway", "worker", "web"]
    assert bot.shard_ids is None and bot.shard_count is None
    assert isinstance(bot.identify_gate, LocalPacing) and bot.identify_gate.window_s == 5.0


async def test_a_bot_publishing_commands_does_no_role(tmp_path: Path) -> None:
    bot = LumiBot(make_settings(tmp_path), extensions=(), serve=False)
    assert not any(bot.runs(role) for role in ("gateway", "worker", "web"))


async def test_a_distributed_bot_does_only_its_roles(tmp_path: Path) -> None:
    bot = LumiBot(make_settings(tmp_path, **DISTRIBUTED, lumi_roles="worker"), extensions=())
    assert bot.runs("worker")
    assert not bot.runs("gateway") and not bot.runs("web")


async def test_a_gateway_identifies_with_its_shard_of_the_plan(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, **DISTRIBUTED, discord_shard_count=4, discord_shard_ids="3")
    bot = LumiBot(settings, extensions=())
    assert (bot.shard_ids, bot.shard_count) == ([3], 4)
    assert isinstance(bot.identify_gate, RedisIdentifyLock)
    await bot.identify_gate.close()


async def test_a_gateway_may_run_several_shards_of_the_plan(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, **DISTRIBUTED, discord_shard_count=4, discord_shard_ids="0,2")
    bot = LumiBot(settings, extensions=())
    assert (bot.shard_ids, bot.shard_count) == ([0, 2], 4)
    await bot.identify_gate.close()
