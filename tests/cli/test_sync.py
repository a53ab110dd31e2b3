"""`lumi sync` against the local Discord server, mostly as a subprocess: what it publishes, how it fails
(and `lumi run` with a token Discord rejects)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import pytest

from bot.cli.sync import publish_commands
from bot.client import EXTENSIONS, LumiBot
from bot.errors import UserFacingError
from bot.runtime import Runtime
from storage.repo import jobs as repo_jobs
from tests.conftest import make_settings
from tests.fakes.discord_api.protocol import JsonDict
from tests.fakes.discord_api.server import FakeDiscord, redirect_discord_py
from tests.fakes.meshy_api.server import FakeMeshy

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "tests" / "launch_lumi.py"
SLASH, MESSAGE_MENU = 1, 3
TOP_LEVEL_COMMANDS = {
    ("3d", SLASH),
    ("comments", SLASH),
    ("comment", SLASH),
    ("moderation", SLASH),
    ("scan", SLASH),
    ("lumi", SLASH),
    ("Scan image", MESSAGE_MENU),
    ("Comment on this photo", MESSAGE_MENU),
}


class Finished(NamedTuple):
    code: int
    stdout: str
    stderr: str


@pytest.fixture
async def server() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as discord_server:
        yield discord_server


async def lumi(
    tmp_path: Path,
    server: FakeDiscord,
    command: str,
    *args: str,
    token: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Finished:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DISCORD_", "MESHY_"))}
    env.update(
        {
            "LUMI_TEST_DISCORD_URL": server.base_url,
            "DISCORD_TOKEN": token or server.token or "",
            # Set as while developing: `lumi sync` publishes where it is told, never to this guild as well.
            "DISCORD_DEV_GUILD_ID": str(server.guild.id),
            "DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": "",
            "LINK_SECRET": "sync-test-link-secret-0123456789",
            "INFERENCE_DEVICE": "cpu",
            **(extra_env or {}),
        }
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(LAUNCHER),
        command,
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(90):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return Finished(process.returncode, stdout.decode(), stderr.decode())


def published(commands: list[JsonDict]) -> set[tuple[str, int]]:
    return {(command["name"], command["type"]) for command in commands}


def subcommands(commands: list[JsonDict], group: str) -> set[str]:
    (command,) = [command for command in commands if command["name"] == group]
    return {option["name"] for option in command["options"]}


async def test_sync_publishes_every_command_globally(tmp_path: Path, server: FakeDiscord) -> None:
    result = await lumi(tmp_path, server, "sync")
    assert result.code == 0, result.stderr
    commands = server.commands[None]
    assert published(commands) >= TOP_LEVEL_COMMANDS
    assert subcommands(commands, "3d") >= {"create", "history", "cancel"}
    assert f"synced {len(commands)} commands globally" in result.stdout
    assert set(server.commands) == {None}
    puts = [request.path for request in server.requests if request.method == "PUT"]
    assert puts == [f"/applications/{server.application_id}/commands"]


async def test_sync_to_one_guild_publishes_the_same_commands_there(
    tmp_path: Path, server: FakeDiscord
) -> None:
    guild_id = server.guild.id
    result = await lumi(tmp_path, server, "sync", "--guild", str(guild_id))
    assert result.code == 0, result.stderr
    commands = server.commands[guild_id]
    assert published(commands) >= TOP_LEVEL_COMMANDS
    assert all(command["guild_id"] == str(guild_id) for command in commands)
    assert f"synced {len(commands)} commands to guild {guild_id}" in result.stdout
    assert set(server.commands) == {guild_id}


@pytest.fixture
async def down_postgres() -> AsyncIterator[tuple[str, list[int]]]:
    """A PostgreSQL URL whose "server" drops every connection at once, and the count of connections made."""
    connections: list[int] = []

    async def drop(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.close()

    listener = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield f"postgresql+asyncpg://lumi:secret@127.0.0.1:{port}/nothing", connections


async def test_sync_never_connects_to_the_database(
    tmp_path: Path, server: FakeDiscord, down_postgres: tuple[str, list[int]]
) -> None:
    # Commands can be published from a machine that cannot reach the production database.
    url, connections = down_postgres
    result = await lumi(tmp_path, server, "sync", extra_env={"DATABASE_URL": url})
    assert result.code == 0, result.stderr
    assert published(server.commands[None]) >= TOP_LEVEL_COMMANDS
    assert connections == []
    assert "database ready" not in result.stderr


async def test_sync_creates_no_sqlite_database(tmp_path: Path, server: FakeDiscord) -> None:
    database_dir = tmp_path / "database"
    database_dir.mkdir()
    url = f"sqlite+aiosqlite:///{database_dir / 'lumi.db'}"
    result = await lumi(tmp_path, server, "sync", extra_env={"DATABASE_URL": url})
    assert result.code == 0, result.stderr
    assert published(server.commands[None]) >= TOP_LEVEL_COMMANDS
    assert list(database_dir.iterdir()) == []
    # Nor the default one under DATA_DIR.
    assert not (tmp_path / "data" / "lumi.db").exists()


async def test_sync_leaves_the_work_of_a_serving_lumi_alone(tmp_path: Path, server: FakeDiscord) -> None:
    # The database a running Lumi uses: one 3D job in progress, which that Lumi is polling.
    runtime = await Runtime.open(make_settings(tmp_path))
    try:
        async with runtime.database.session() as session:
            await repo_jobs.create_job(
                session=session, user_id=1, guild_id=server.guild.id, prompt="a brass lantern"
            )
            await session.commit()
    finally:
        await runtime.close()
    async with FakeMeshy() as meshy:
        meshy_env = {"MESHY_API_KEY": meshy.api_key, "MESHY_BASE_URL": meshy.base_url}
        result = await lumi(tmp_path, server, "sync", extra_env=meshy_env)
        assert result.code == 0, result.stderr
        assert meshy.requests == []
    assert "resumed" not in result.stderr
    assert "web server listening" not in result.stderr


async def test_a_rejected_token_is_one_line_and_a_failure(tmp_path: Path, server: FakeDiscord) -> None:
    result = await lumi(tmp_path, server, "sync", token="not-the-bot-token")
    assert result.code == 2
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("lumi:")]
    assert "DISCORD_TOKEN" in line
    assert server.commands == {}


async def test_lumi_run_with_a_rejected_token_is_one_line_and_a_failure(
    tmp_path: Path, server: FakeDiscord
) -> None:
    result = await lumi(tmp_path, server, "run", token="not-the-bot-token")
    assert result.code == 2
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("lumi:")]
    assert "DISCORD_TOKEN" in line


async def test_a_cog_that_fails_to_load_stops_the_sync(tmp_path: Path, server: FakeDiscord) -> None:
    # Publishing replaces the whole list, so syncing without a cog would delete that cog's commands.
    bot = LumiBot(make_settings(tmp_path), extensions=(*EXTENSIONS, "cogs.not_there"), serve=False)
    assert server.token is not None
    with redirect_discord_py(server), pytest.raises(UserFacingError, match=r"could not load cogs\.not_there"):
        await publish_commands(bot, server.token, None)
    assert server.commands == {}
