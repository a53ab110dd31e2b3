"""A custom classifier in the inference service against the same classifier in the gateway, measured.

    PYTHONPATH=. .venv/bin/python bench/serving_classifiers.py [--images 64] [--rounds 2] [--concurrency 8]

Trains the tests' pattern classifier (the 64 px small CNN), registers it in a temporary DATA_DIR,
starts Lumi's Ray Serve app with the classifiers family only (one replica, ``@serve.batch``, 10 ms
window) on a local 2-CPU Ray cluster, then in every round, in a different order each round, runs one
gateway's ``ClassifierDetector`` over ``--images`` package photos (decoded as moderation's extra
detectors decode them) with ``--concurrency`` posts in flight:

- ``in-process``: the classifier loaded in the gateway (Lumi's default);
- ``remote``: the gateway with ``INFERENCE_URL`` runners, the classifier in the service.

The figures: images/s and p50/p95 latency per image, median and range over rounds. Not a test: figures
depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from moderation_parts import corpus, percentile, rotated, spread

MODES = ("in-process", "remote")


async def _measure(
    url: str | None, data_dir: Path, images: list[bytes], concurrency: int
) -> dict[str, float]:
    from bot.services.moderation.classifiers.catalog import ClassifierCatalog
    from bot.services.moderation.classifiers.detector import ClassifierDetector
    from bot.services.moderation.detector_frames import DetectorFrames
    from inference.images import ImageLimits
    from inference.registry import ModelRegistry
    from inference.serving.client import InferenceClient
    from inference.serving.remote import RemoteModels

    remote = RemoteModels(InferenceClient(url, timeout_s=60.0)) if url else None
    registry = ModelRegistry("cpu", remote=remote)
    detector = ClassifierDetector(ClassifierCatalog(data_dir / "classifiers"), registry)
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(data: bytes) -> None:
        async with gate:
            started = time.perf_counter()
            scores = await detector.scores(data, DetectorFrames(data, ImageLimits()))
            if "violence" not in scores:
                raise RuntimeError(f"the classifier was left out ({url or 'in-process'})")
            latencies.append((time.perf_counter() - started) * 1000)

    try:
        await one(images[0])  # loads the model (here or in the service)
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one(data) for data in images))
        elapsed = time.perf_counter() - started
    finally:
        await detector.close()
        await registry.close()
    return {
        "images_s": len(images) / elapsed,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    from inference.tensorflow_support import import_torch_side

    import_torch_side()
    import ray
    from ray import serve

    from bot.services.moderation.classifiers.catalog import classifier_catalog
    from bot.services.moderation.classifiers.served import ServedClassifierSource
    from inference.serving.app import FamilyResources, build_app
    from inference.serving.models import ServeOptions
    from tests.conftest import make_settings
    from tests.fakes.patterns import train_pattern_classifier

    work = Path(tempfile.mkdtemp(prefix="lumi-bench-classifiers-"))
    data_dir = work / "data"
    classifier_catalog(data_dir).add(
        train_pattern_classifier(work / "pattern"), category="violence", verify=None
    )
    images = [data for _, data in corpus(args.images)]
    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_app(
            ServeOptions(device="cpu"),
            families=["classifiers"],
            resources={"classifiers": FamilyResources(1, 1.0, 0.0)},
            classifier_source=ServedClassifierSource(make_settings(work, data_dir=data_dir)),
        )
        serve.run(app, name="lumi", route_prefix="/")
        for round_index in range(args.rounds):
            for mode in rotated(MODES, round_index):
                url = f"http://127.0.0.1:{port}" if mode == "remote" else None
                outcome = asyncio.run(_measure(url, data_dir, images, args.concurrency))
                results[mode].append(outcome)
                print(f"round {round_index + 1} {mode}: {outcome}", file=sys.stderr, flush=True)
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
    print(f"{args.images} images, {args.concurrency} in flight, {args.rounds} rounds, median (range)")
    print("| mode | images/s | p50 ms | p95 ms |\n|---|---|---|---|")
    for mode in MODES:
        rows = results[mode]
        print(
            f"| {mode} | {spread([r['images_s'] for r in rows], 1)} | {spread([r['p50'] for r in rows], 0)} "
            f"| {spread([r['p95'] for r in rows], 0)} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
