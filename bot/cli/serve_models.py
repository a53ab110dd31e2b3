"""`lumi serve-models`: Lumi's models on Ray Serve, for every gateway started with INFERENCE_URL.

Starts (or joins, with `--address`) a Ray cluster, deploys the OIP ingress and one deployment per model
family with the replicas and CPU/GPU shares of SERVE_REPLICAS, SERVE_NUM_CPUS and SERVE_NUM_GPUS (the
`classifiers` family serves the custom classifiers of the registry these settings name), and
serves until Ctrl+C or SIGTERM, then shuts Serve and the Ray it started down. Ray is imported here only:
gateways do not need it (`pip install 'lumi[serve]'` on the service's machines).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from bot.cli.common import settings_and_logging
from bot.config import Settings
from bot.errors import UserFacingError

log = logging.getLogger(__name__)

_DEFAULT_FAMILIES = ("moderation", "perception", "commenter", "classifiers")
# Long enough for the replicas to finish the batches in flight (their own limit is 5 s, app.py).
_SERVE_SHUTDOWN_S = 8.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve-models",
        help="serve Lumi's models over the Open Inference Protocol on Ray Serve (for INFERENCE_URL)",
    )
    parser.add_argument("--host", help="address to listen on (default SERVE_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default SERVE_PORT, 8000)")
    parser.add_argument(
        "--families",
        default=",".join(_DEFAULT_FAMILIES),
        help="model families to deploy, comma-separated (default: all of "
        + ",".join(_DEFAULT_FAMILIES)
        + ")",
    )
    parser.add_argument(
        "--batching",
        choices=("serve", "lumi"),
        default="serve",
        help="who groups requests into batches: Ray Serve's @serve.batch (default) or Lumi's batcher",
    )
    parser.add_argument("--max-batch-size", type=int, default=16, help="items per model call (default 16)")
    parser.add_argument("--batch-wait-ms", type=float, default=10.0, help="batch wait window (default 10)")
    parser.add_argument("--address", help="join this Ray cluster instead of starting one (e.g. auto)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the Ray cluster started here (default: all)")
    parser.set_defaults(func=_serve)


def serve_options(settings: Settings, args: argparse.Namespace) -> Any:
    from inference.serving.models import ServeOptions

    return ServeOptions(
        device=settings.inference_device,
        intra_op_threads=settings.inference_threads,
        face_detector=settings.comment_face_detector,
        objects_weights=settings.comment_objects_weights,
        objects_weights_dir=settings.data_dir / "models",
        objects_download=settings.comment_objects_download,
        comment_model_dir=settings.comment_model_dir,
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        batching=args.batching,
    )


def check_family_settings(settings: Settings) -> None:
    """Refuse SERVE_REPLICAS/SERVE_NUM_CPUS/SERVE_NUM_GPUS entries for deployments that do not exist."""
    unknown = (
        set(settings.serve_replicas) | set(settings.serve_num_cpus) | set(settings.serve_num_gpus)
    ) - set(_DEFAULT_FAMILIES)
    if unknown:
        raise UserFacingError(
            f"SERVE_REPLICAS/SERVE_NUM_CPUS/SERVE_NUM_GPUS name unknown deployments {sorted(unknown)}; "
            f"known: {', '.join(_DEFAULT_FAMILIES)}"
        )


def family_resources(settings: Settings, families: list[str], *, cluster_cpus: float) -> dict[str, Any]:
    """Each family's replicas and CPU/GPU share; a CPU share not set is one CPU, or less where the
    cluster has fewer CPUs than families (4 families on 2 cores: 0.5 each), so that every
    replica can be placed. Ray's CPUs only place replicas; the models' threads follow INFERENCE_THREADS.
    """
    from inference.serving.app import FamilyResources

    default_cpus = min(1.0, cluster_cpus / len(families)) if cluster_cpus > 0 else 1.0
    return {
        family: FamilyResources(
            replicas=settings.serve_replicas.get(family, 1),
            # Rounded down: three shares of 0.67 would not fit on 2 CPUs.
            num_cpus=settings.serve_num_cpus.get(family, math.floor(default_cpus * 100) / 100),
            num_gpus=settings.serve_num_gpus.get(family, 0.0),
        )
        for family in families
    }


def _serve(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.host:
        overrides["serve_host"] = args.host
    if args.port is not None:
        overrides["serve_port"] = args.port
    settings = settings_and_logging(**overrides)
    families = [name.strip() for name in args.families.split(",") if name.strip()]
    if not families or set(families) - set(_DEFAULT_FAMILIES):
        raise UserFacingError(
            f"--families takes some of {', '.join(_DEFAULT_FAMILIES)}, got {args.families!r}"
        )
    check_family_settings(settings)
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    try:
        import ray
        from ray import serve

        from inference.serving.app import build_app
    except ImportError as error:
        raise UserFacingError(
            f"Ray Serve is not installed ({error}); install it with `pip install 'lumi[serve]'`"
        ) from None

    started_ray = not ray.is_initialized() and args.address is None
    if started_ray:
        # Ray starts its workers at niceness 15; the replicas are this service's work, and beside
        # gateways or anything else at 0 on the same cores they got a small part of the CPU.
        os.environ.setdefault("RAY_worker_niceness", "0")
    init: dict[str, Any] = {"include_dashboard": False}
    metrics_port = os.environ.get("LUMI_SERVE_METRICS_PORT")
    if metrics_port:
        init["_metrics_export_port"] = int(metrics_port)
    if args.num_cpus is not None:
        init["num_cpus"] = args.num_cpus
    ray.init(address=args.address, **init)
    # SIGTERM stops it as Ctrl+C does, also while it is still deploying: a KeyboardInterrupt here.
    # Set after ray.init, whose own handler would first wait for the node to drain.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        resources = family_resources(
            settings,
            families,
            cluster_cpus=float(ray.cluster_resources().get("CPU", 0.0)),  # type: ignore[no-untyped-call]
        )
        from bot.services.moderation import ServedClassifierSource

        app = build_app(
            serve_options(settings, args),
            families=families,
            resources=resources,
            classifier_source=ServedClassifierSource(settings),
        )
        serve.start(http_options={"host": settings.serve_host, "port": settings.serve_port})
        serve.run(app, name="lumi", route_prefix="/")
        url = f"http://{settings.serve_host}:{settings.serve_port}"
        shares = ", ".join(f"{family} {share.num_cpus:g} CPU" for family, share in resources.items())
        print(
            f"\nLumi's models are served at {url} ({shares}).\n"
            f"  Gateways: INFERENCE_URL={url}\n"
            f"  health: {url}/v2/health/ready   batches: {url}/v2/debug/batches\n"
            "  Press Ctrl+C to stop.\n",
            flush=True,
        )
        threading.Event().wait()
    except KeyboardInterrupt:
        log.info("shutdown requested")
    finally:
        _shut_serve_down(serve.shutdown)
        if started_ray:
            ray.shutdown()
    return 0


def _shut_serve_down(shutdown: Callable[[], None]) -> None:
    """Serve's graceful shutdown (replicas finish their requests), for up to ``_SERVE_SHUTDOWN_S``.

    A SIGTERM sent to the whole process group (systemd, ``kill -- -PGID``) reaches Ray's own processes
    too: their node drains, and ``serve.shutdown`` then waited its full 30 s for a controller that
    could not finish; the cluster stops with ``ray.shutdown`` either way.
    """
    worker = threading.Thread(target=shutdown, name="lumi-serve-shutdown", daemon=True)
    worker.start()
    worker.join(_SERVE_SHUTDOWN_S)
    if worker.is_alive():
        log.warning("Ray Serve did not shut down within %g s; stopping Ray", _SERVE_SHUTDOWN_S)
