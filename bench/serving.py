"""Two gateways sharing one inference service against two gateways with their own models, measured.

    PYTHONPATH=. .venv/bin/python bench/serving.py [--images 48] [--rounds 2] [--concurrency 8]
        [--service-threads N] [--worker-niceness 15] [--device auto|cpu|cuda]

Starts Lumi's Ray Serve app (the moderation family, one replica) on a local Ray cluster, then in every
round runs both modes, in a different order each round:

- ``in-process``: 2 gateway processes, each with its own NudeNet and open_nsfw (Lumi's default);
- ``remote``: 2 gateway processes with ``INFERENCE_URL`` runners to the one service, which batches
  with one ``@serve.batch`` queue per model;
- ``remote-lumi``: the same against a second deployment of the app (route prefix ``/lumi-batching``)
  whose replica batches with Lumi's ``DynamicBatcher`` instead (``--batching lumi``).

Each gateway process decodes the same ``--images`` package photos as moderation does and runs them
through ``ImageModerator`` with ``--concurrency`` posts in flight; both processes start together. The
figures: images/s over both processes, p50/p95 latency per image, and the memory of the mode's
processes (the gateways' peak RSS, plus the Ray cluster's RSS, which holds both apps, for the remote
modes). Ratios are over in-process in the same round; median and range over rounds. Then where the
CPU goes: each Ray process's use while idle, and per image beyond it, by role (``serving_cpu.py``),
and the mean items per model call in the service. The service's models get ``INFERENCE_THREADS``'
default threads and its workers niceness 0, as with ``lumi serve-models``. With CUDA present
(``--device auto``, the default) every mode runs its models on the GPU (each app's replica with half a
GPU) and the figures end with what a GPU run should show. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from moderation_parts import corpus, percentile, rotated, spread
from serving_cpu import cpu_by_role, idle_per_s, per_image_ms, ray_rss_mib

ROOT = Path(__file__).resolve().parents[1]
MODES = ("in-process", "remote", "remote-lumi")
GPU_EXPECTATION = """\
On a GPU the comparison is the point of the service: 2 in-process gateways hold 2 copies of the models
in GPU memory and each sends its own half-empty batches; one service holds 1 copy and its batches hold
both gateways' images (the items per model call above should grow with the gateways' traffic). A GPU
run should show remote/local images/s of 1 or more (the hop costs CPU, not GPU time), GPU memory in
nvidia-smi about half of the two gateways', and p50 latency within the batch wait (10 ms) of in-process."""


async def _gateway(
    url: str | None, count: int, concurrency: int, start: float, device: str
) -> dict[str, Any]:
    from inference.images import ImageLimits, decode_image
    from inference.moderation import ImageModerator, at_moderation_scale, register_moderation_models
    from inference.registry import ModelRegistry

    remote = None
    if url:
        from inference.serving.client import InferenceClient
        from inference.serving.remote import RemoteModels

        remote = RemoteModels(InferenceClient(url, timeout_s=120.0))
    registry = ModelRegistry(device, remote=remote)
    register_moderation_models(registry)
    moderator = ImageModerator(registry)
    limits = at_moderation_scale(ImageLimits())
    images = [decode_image(data, limits=limits) for _, data in corpus(count)]
    await moderator.analyse(images[0])  # load (in-process) or reach the service, outside the timing
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(image: Any) -> None:
        async with gate:
            began = time.perf_counter()
            await moderator.analyse(image)
            latencies.append(time.perf_counter() - began)

    await asyncio.sleep(max(0.0, start - time.time()))
    began, cpu_began = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(image) for image in images))
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    await registry.close()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall_s": wall, "cpu_s": cpu, "latencies": latencies, "rss_mib": rss_mib}


def _worker(args: argparse.Namespace) -> None:
    if not args.url:
        # As Lumi does before its models load; a remote gateway loads none, so it imports no torch.
        from inference.tensorflow_support import import_torch_side

        import_torch_side()
    result = asyncio.run(_gateway(args.url or None, args.images, args.concurrency, args.start, args.device))
    print(json.dumps(result))


def _batch_sizes(url: str) -> dict[str, list[int]]:
    with urllib.request.urlopen(f"{url}/v2/debug/batches", timeout=30) as response:
        sizes: dict[str, list[int]] = json.loads(response.read())
    return sizes


def _round(
    mode: str, urls: dict[str, str], args: argparse.Namespace, idle: dict[str, float]
) -> dict[str, Any]:
    start = time.time() + 20.0  # both processes import, load and decode first
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--url",
        urls.get(mode, ""),
        "--images",
        str(args.images),
        "--concurrency",
        str(args.concurrency),
        "--start",
        str(start),
        "--device",
        args.device,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    url = urls.get(mode)
    batches_before = _batch_sizes(url) if url else {}
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, env=env, cwd=ROOT) for _ in range(2)]
    # The Ray processes' CPU from the moment both gateways start sending (their warm-up is done).
    time.sleep(max(0.0, start - time.time()))
    cpu_before = cpu_by_role()
    results = [json.loads(process.communicate()[0]) for process in processes]
    latencies = [value for result in results for value in result["latencies"]]
    wall = max(result["wall_s"] for result in results)
    gateways = sum(result["rss_mib"] for result in results)
    # CPU ms per image by process role (the Ray cluster's roles only count for the remote modes).
    cpu = {}
    if url:
        window = time.time() - start
        cpu = per_image_ms(cpu_before, cpu_by_role(), len(latencies), wall_s=window, idle_per_s=idle)
    cpu["gateways"] = round(1000 * sum(result["cpu_s"] for result in results) / len(latencies), 1)
    batches = {}
    if url:
        after = _batch_sizes(url)
        for model, sizes in after.items():
            new = sizes[len(batches_before.get(model, [])) :]
            batches[model] = round(sum(new) / len(new), 1) if new else 0.0
    return {
        "images_per_s": len(latencies) / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "gateways_mib": gateways,
        "rss_mib": gateways + (ray_rss_mib() if url else 0.0),
        "cpu_ms_per_image": cpu,
        "mean_batch": batches,
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=48, help="images per gateway process")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="posts in flight per gateway")
    parser.add_argument(
        "--service-threads",
        type=int,
        default=None,
        help="threads per model in the service (default: INFERENCE_THREADS' default, as lumi serve-models)",
    )
    parser.add_argument(
        "--worker-niceness",
        default="0",
        help="niceness of the Ray workers (default 0, as lumi serve-models; Ray's own default is 15)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu or cuda, for every mode's models"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    os.environ["RAY_worker_niceness"] = args.worker_niceness  # noqa: SIM112 - Ray spells it so
    import ray
    from ray import serve

    from inference.device import resolve_device
    from inference.serving.app import FamilyResources, build_app
    from inference.serving.models import ServeOptions
    from inference.threads import default_threads

    threads = args.service_threads or default_threads()
    args.device = resolve_device(args.device)
    gpu_share = 0.5 if args.device == "cuda" else 0.0
    port = _free_port()
    ray.init(
        num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=200_000_000, log_to_driver=False
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        urls: dict[str, str] = {}
        for mode, batching, prefix in (("remote", "serve", "/"), ("remote-lumi", "lumi", "/lumi-batching")):
            options = ServeOptions(device=args.device, intra_op_threads=threads, batching=batching)  # type: ignore[arg-type]
            app = build_app(
                options,
                families=["moderation"],
                resources={"moderation": FamilyResources(1, 1.0, gpu_share)},
            )
            serve.run(app, name=f"lumi-{batching}", route_prefix=prefix)
            urls[mode] = f"http://127.0.0.1:{port}{prefix.rstrip('/')}"
        idle = idle_per_s()
        figures: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        for index in range(args.rounds):
            for mode in rotated(MODES, index):
                figures[mode].append(_round(mode, urls, args, idle))
                print(f"round {index + 1} {mode}: {figures[mode][-1]}", flush=True)
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()

    print(
        f"\n2 gateways x {args.images} images, {args.concurrency} in flight each, {threads} service threads, "
        f"models on {args.device}"
    )
    keys = ("images_per_s", "p50_ms", "p95_ms", "gateways_mib", "rss_mib")
    print(f"{'':16}" + "".join(f"{key:>24}" for key in keys))
    for mode in MODES:
        row = [spread([round_[key] for round_ in figures[mode]], 1) for key in keys]
        print(f"{mode:16}" + "".join(f"{cell:>24}" for cell in row))
    for mode in MODES[1:]:
        ratios = [
            spread([a[key] / b[key] for a, b in zip(figures[mode], figures["in-process"], strict=True)])
            for key in keys
        ]
        print(f"{mode + '/local':16}" + "".join(f"{cell:>24}" for cell in ratios))
    idle_cores = ", ".join(
        f"{role} {100 * rate:.0f}%" for role, rate in sorted(idle.items()) if rate >= 0.005
    )
    print(f"\nRay's processes while idle, in % of a core: {idle_cores}")
    print("CPU ms per image by process beyond idle (median over rounds), and items per model call")
    for mode in MODES:
        roles = sorted({role for round_ in figures[mode] for role in round_["cpu_ms_per_image"]})
        cells = [
            f"{role} {spread([round_['cpu_ms_per_image'].get(role, 0.0) for round_ in figures[mode]], 1)}"
            for role in roles
        ]
        models = sorted({model for round_ in figures[mode] for model in round_["mean_batch"]})
        cells += [
            f"{model} batch {spread([round_['mean_batch'].get(model, 0.0) for round_ in figures[mode]], 1)}"
            for model in models
        ]
        print(f"{mode:16}" + "; ".join(cells))
    print()
    if args.device != "cuda":
        print("No CUDA here: these are CPU figures. " + GPU_EXPECTATION.replace("\n", " "))
    else:
        print(GPU_EXPECTATION)


if __name__ == "__main__":
    main()
