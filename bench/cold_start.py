"""Cold starts, measured from process start: `lumi comment --labels`, `lumi comment --help`, `lumi run`.

    .venv/bin/python bench/cold_start.py [--rounds 5] [--profile] [--before CHECKOUT] [--json]

Each round runs every item once, in a different order each round, each in a fresh process:

- `python -c pass`: the interpreter's own start and exit, the baseline every ratio is against;
- `python -c "import torch"`, `python -c "import transformers"` and the comment model's class
  (`from transformers import T5ForConditionalGeneration`): what the frameworks cost before Lumi does
  anything;
- `lumi comment --labels "기쁨, 재킷"` with the committed default model: process start to exit, one
  comment written (the model loaded, warmed up and run, the Korean analyser of its guard loaded);
- `lumi comment --help`;
- `lumi run` on embedded defaults (SQLite in a temporary DATA_DIR) against the local Discord server of
  the tests (`tests/fakes/discord_api`): process start to the first 200 from `/healthz`, and to
  "connected as" in its log (logged in, commands synced, gateway READY). Models load on first use, so
  neither waits for them.

Figures: median and range over the rounds, the median's ratio to the baseline's and its excess over it.
`--profile` adds `-X importtime`'s largest imports for `lumi comment --labels`; `--before CHECKOUT` adds
`lumi comment --labels` run from another checkout (an older commit) in the same rounds. Not a test: the
figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.lumi_process import LAUNCHER, ROOT, base_env
from tests.fakes.discord_api.server import FakeDiscord

LABELS = "기쁨, 재킷"
BASELINE = "python -c pass"
COMMANDS: dict[str, list[str]] = {
    BASELINE: ["-c", "pass"],
    "import torch": ["-c", "import torch"],
    "import transformers": ["-c", "import transformers"],
    "import transformers.T5ForConditionalGeneration": [
        "-c",
        "from transformers import T5ForConditionalGeneration",
    ],
    "lumi comment --labels": ["-m", "bot", "comment", "--labels", LABELS],
    "lumi comment --help": ["-m", "bot", "comment", "--help"],
}
RUN_HEALTHZ = "lumi run → /healthz 200"
RUN_READY = "lumi run → connected"
RUN_LIMIT_S = 120.0


def child_env(data_dir: Path, base: dict[str, str] | None = None, *, checkout: Path = ROOT) -> dict[str, str]:
    """`checkout` (this one by default) first on the path, the committed comment model; no developer
    .env (the children run in a temporary folder)."""
    env = {key: value for key, value in (base or os.environ).items() if not key.startswith("COMMENT_")}
    if base is None:
        env = {key: value for key, value in env.items() if not key.startswith("DISCORD_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH")])),
            "DATA_DIR": str(data_dir),
            "INFERENCE_DEVICE": "cpu",
            "COMMENT_OBJECTS_DOWNLOAD": "false",
        }
    )
    return env


async def time_command(args: Sequence[str], workdir: Path, checkout: Path = ROOT) -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=workdir,
        env=child_env(workdir / "data", checkout=checkout),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {process.returncode}:\n{err.decode()[-2000:]}")
    return elapsed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def time_run(workdir: Path) -> tuple[float, float]:
    """Seconds from `lumi run`'s start to the first 200 from /healthz, and to "connected as"."""
    port = free_port()
    async with FakeDiscord() as discord_server, aiohttp.ClientSession() as http:
        discord_env = base_env(
            workdir / "data", discord_server.base_url, discord_server.token or "", discord_server.guild.id
        )
        env = {**child_env(workdir / "data", discord_env), "WEB_PORT": str(port)}
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(LAUNCHER),
            "run",
            cwd=workdir,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        connected: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        output: list[str] = []

        async def read_log() -> None:
            assert process.stdout is not None
            async for raw in process.stdout:
                line = raw.decode(errors="replace")
                output.append(line)
                if "connected as" in line and not connected.done():
                    connected.set_result(time.perf_counter() - started)

        reader = asyncio.create_task(read_log())
        try:
            async with asyncio.timeout(RUN_LIMIT_S):
                healthz = await first_healthz(http, port, started, process)
                ready = await connected
        except TimeoutError:
            raise RuntimeError(
                f"lumi run did not get ready in {RUN_LIMIT_S:g} s:\n{''.join(output)[-3000:]}"
            ) from None
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            await process.wait()
            await reader
        return healthz, ready


async def first_healthz(
    http: aiohttp.ClientSession, port: int, started: float, process: asyncio.subprocess.Process
) -> float:
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"lumi run exited {process.returncode} before /healthz answered")
        try:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except aiohttp.ClientConnectionError:
            pass  # not listening yet
        await asyncio.sleep(0.02)


async def measure(rounds: int, before: Path | None) -> dict[str, list[float]]:
    items = [*COMMANDS, "lumi run"]
    before_item = f"lumi comment --labels ({before})"
    if before is not None:
        items.append(before_item)
    times: dict[str, list[float]] = {
        name: [] for name in [*items, RUN_HEALTHZ, RUN_READY] if name != "lumi run"
    }
    with tempfile.TemporaryDirectory(prefix="lumi-cold-") as folder:
        for round_index in range(rounds):
            shift = round_index % len(items)
            for name in [*items[shift:], *items[:shift]]:
                workdir = Path(folder) / f"{round_index}-{len(os.listdir(folder))}"
                workdir.mkdir()
                if name == "lumi run":
                    healthz, ready = await time_run(workdir)
                    times[RUN_HEALTHZ].append(healthz)
                    times[RUN_READY].append(ready)
                elif name == before_item and before is not None:
                    times[name].append(await time_command(COMMANDS["lumi comment --labels"], workdir, before))
                else:
                    times[name].append(await time_command(COMMANDS[name], workdir))
            print(f"round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)
    return times


def report(times: dict[str, list[float]]) -> list[dict[str, Any]]:
    base = statistics.median(times[BASELINE])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(
            {
                "item": name,
                "median_s": round(median, 3),
                "min_s": round(min(values), 3),
                "max_s": round(max(values), 3),
                "ratio_to_baseline": round(median / base, 1),
                "over_baseline_s": round(median - base, 3),
            }
        )
    return rows


def import_profile(top: int) -> list[tuple[str, float, float]]:
    """(module, self s, cumulative s) of the slowest imports of one `lumi comment --labels`."""
    with tempfile.TemporaryDirectory(prefix="lumi-cold-") as folder:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", *COMMANDS["lumi comment --labels"]],
            cwd=folder,
            env=child_env(Path(folder) / "data"),
            capture_output=True,
            text=True,
            check=True,
        )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, module = line.removeprefix("import time:").split("|")
        rows.append((module.rstrip(), int(self_us) / 1e6, int(cumulative_us) / 1e6))
    return sorted(rows, key=lambda row: row[2], reverse=True)[:top]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="-X importtime's top imports of lumi comment")
    parser.add_argument("--top", type=int, default=25, help="imports listed by --profile")
    parser.add_argument(
        "--before",
        type=Path,
        metavar="CHECKOUT",
        help="also time lumi comment --labels from another checkout (e.g. `git worktree add` of an older "
        "commit), in the same rounds",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    before = args.before.resolve() if args.before is not None else None
    rows = report(asyncio.run(measure(args.rounds, before)))
    profile = import_profile(args.top) if args.profile else []
    if args.json:
        print(
            json.dumps({"rounds": args.rounds, "items": rows, "import_profile": profile}, ensure_ascii=False)
        )
        return 0
    print(
        f"cold starts on {os.cpu_count()} cores, {args.rounds} rounds: median (range), ratio to `{BASELINE}`"
    )
    for row in rows:
        median = f"{row['median_s']:6.2f} s ({row['min_s']:.2f}–{row['max_s']:.2f})"
        print(f"  {row['item']:<48} {median}  x{row['ratio_to_baseline']:<7} +{row['over_baseline_s']:.2f} s")
    if profile:
        print(
            "\nslowest imports of `lumi comment --labels` (-X importtime: cumulative, self; nested indented):"
        )
        for module, self_s, cumulative_s in profile:
            print(f"  {cumulative_s:6.3f} s  {self_s:6.3f} s  {module}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
