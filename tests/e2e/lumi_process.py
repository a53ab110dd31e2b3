"""A real Lumi in a child process (`tests/launch_lumi.py run`), for tests that kill or signal it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "tests" / "launch_lumi.py"
START_S = 60.0


def base_env(data_dir: Path, discord_url: str, token: str, dev_guild_id: int) -> dict[str, str]:
    """This process's environment without Discord or Meshy settings, plus a Lumi for the local server."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DISCORD_", "MESHY_"))}
    env.update(
        {
            "LUMI_TEST_DISCORD_URL": discord_url,
            "DISCORD_TOKEN": token,
            "DISCORD_DEV_GUILD_ID": str(dev_guild_id),
            "DISCORD_GUILD_READY_TIMEOUT_S": "0.05",
            "DATA_DIR": str(data_dir),
            "DATABASE_URL": "",
            "WEB_HOST": "127.0.0.1",
            "WEB_PORT": "0",
            "LINK_SECRET": "process-test-link-secret-0123456789",
            "INFERENCE_DEVICE": "cpu",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class LumiProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log = self.log_path.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, str(LAUNCHER), "run", cwd=ROOT, env=self.env, stdout=log, stderr=log
            )
        finally:
            log.close()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def wait_for_log(self, text: str, timeout: float = START_S) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while text not in self.log():
                assert self.process is not None
                if self.process.returncode is not None:
                    raise AssertionError(f"Lumi exited ({self.process.returncode}):\n{self.log()[-3000:]}")
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    async def terminate(self, timeout: float) -> int:  # noqa: ASYNC109
        """SIGTERM, as a service manager stops Lumi; its exit status once it has stopped by itself."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout):
            return await self.process.wait()
