"""Distributed mode, one Lumi process against two, on the same work, in one run.

    .venv/bin/python bench/distributed.py [--images 100] [--jobs 200] [--heartbeat-timeout-s 5]
                                          [--submit-interval-s 0] [--rounds 1] [--logs DIR]
                                          [--quick] [--json]

Each run is real `lumi run` processes (`LUMI_MODE=distributed`, every role) on a scratch PostgreSQL
database and a Redis key prefix of its own, against the local Discord server (two shards, guilds on
both) and the local Meshy server from `tests/fakes`. One process runs both shards; two processes run
one shard each. Every run, after its models are loaded:

1. posts `--images` images across the guilds at once: images/s until every post has its verdict (a
   case), and cases against posts (missing, duplicates);
2. sends `--jobs` `/3d create` commands at once: jobs/s until every job is done, jobs lost, duplicate
   Meshy tasks per job and stage; with two processes the one holding more unfinished jobs is SIGKILLed
   once half of the jobs are done, and the takeover time is how long the other took to claim every job
   the dead one held.

Rounds alternate which run goes first, so a busy moment of a shared machine does not favour one; with
several rounds figures are the median and range. The table ends with the targets, met or not, then the
timeline of every job with a duplicate Meshy task (`distributed_trace`: claims, lease epochs, create
requests, tasks, the kill). Exit status 0 even when a target is missed (this is a measurement), 2 when
the bench itself could not run.
Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("YOLO_OFFLINE", "1")

from distributed_cluster import RunPlan, running_cluster
from distributed_jobs import JobFigures, measure_jobs
from distributed_moderation import ModerationFigures, measure_moderation, warm_up
from distributed_report import print_table, targets
from distributed_trace import print_traces

# Commands a second apart: no two submissions overlap in one process (see docs/distributed.md's benchmark).
QUICK = {
    "images": 6,
    "jobs": 6,
    "guilds_per_shard": 1,
    "preview_s": 3.0,
    "refine_s": 1.0,
    "submit_interval_s": 1.0,
    "timeout_s": 240.0,
}


async def one_run(plan: RunPlan, args: argparse.Namespace, round_index: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lumi-bench-distributed-") as scratch:
        folder = Path(scratch)
        if args.logs is not None:
            folder = args.logs / f"round-{round_index + 1}-{plan.name.replace(' ', '-')}"
            folder.mkdir(parents=True, exist_ok=True)
        async with running_cluster(plan, folder) as cluster:
            await warm_up(cluster)
            moderation: ModerationFigures = await measure_moderation(cluster, args.images, args.timeout_s)
            kill = len(plan.shards_per_process) > 1
            jobs: JobFigures = await measure_jobs(
                cluster,
                args.jobs,
                kill=kill,
                timeout=args.timeout_s,
                submit_interval_s=args.submit_interval_s,
            )
            tracebacks = cluster.logs().count("Traceback")
    return {
        "moderation": {**asdict(moderation), "images_per_s": round(moderation.images_per_s, 3)},
        "jobs": {**asdict(jobs), "jobs_per_s": round(jobs.jobs_per_s, 3), "lost": jobs.lost},
        "tracebacks_in_logs": tracebacks,
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    common = {
        "guilds_per_shard": args.guilds_per_shard,
        "jobs": args.jobs,
        "max_concurrent_jobs": args.max_concurrent_jobs or args.jobs,
        "heartbeat_timeout_s": args.heartbeat_timeout_s,
        "preview_s": args.preview_s,
        "refine_s": args.refine_s,
    }
    plans = [RunPlan(shards_per_process=("0,1",), **common), RunPlan(shards_per_process=("0", "1"), **common)]
    runs: dict[str, list[dict[str, Any]]] = {plan.name: [] for plan in plans}
    for round_index in range(args.rounds):
        for plan in plans if round_index % 2 == 0 else plans[::-1]:
            print(f"round {round_index + 1}: {plan.name}...", file=sys.stderr, flush=True)
            runs[plan.name].append(await one_run(plan, args, round_index))
    return {
        "settings": {
            **common,
            "images": args.images,
            "rounds": args.rounds,
            "submit_interval_s": args.submit_interval_s,
        },
        "runs": runs,
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=100, help="images posted per run")
    parser.add_argument("--jobs", type=int, default=200, help="3D jobs sent at once per run")
    parser.add_argument("--heartbeat-timeout-s", type=float, default=5.0, help="JOB_HEARTBEAT_TIMEOUT_S")
    parser.add_argument("--max-concurrent-jobs", type=int, default=None, help="default: --jobs")
    parser.add_argument("--guilds-per-shard", type=int, default=2)
    parser.add_argument("--preview-s", type=float, default=4.0, help="Meshy preview task duration")
    parser.add_argument("--refine-s", type=float, default=2.0, help="Meshy refine task duration")
    parser.add_argument(
        "--submit-interval-s", type=float, default=0.0, help="seconds between two /3d commands (0: at once)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of each; the order alternates")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="limit of each phase of a run")
    parser.add_argument("--quick", action="store_true", help="a smoke run: " + json.dumps(QUICK))
    parser.add_argument("--logs", type=Path, default=None, help="keep each run's files and logs here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.images < 1 or args.jobs < 2 or args.rounds < 1 or args.guilds_per_shard < 1:
        parser.error("--images and --rounds must be at least 1, --jobs at least 2, --guilds-per-shard 1")
    if not 1 <= (args.max_concurrent_jobs or args.jobs) <= 1000:
        parser.error("--max-concurrent-jobs (default --jobs) must be between 1 and 1000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        report = asyncio.run(measure(args))
    except BaseException as error:  # pytest's skip (no PostgreSQL) is a BaseException too
        if isinstance(error, KeyboardInterrupt):
            raise
        traceback.print_exc()
        print(f"the bench could not run: {error}", file=sys.stderr)
        return 2
    report["targets"] = targets(report, args.heartbeat_timeout_s)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
        print_traces([(name, run) for name, runs in report["runs"].items() for run in runs])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
