"""3D generation under load: many concurrent jobs against the local Meshy double.

    .venv/bin/python bench/generate3d.py [--jobs 200] [--preview-s 0.5] [--refine-s 0.5]
                                         [--account-limit N] [--no-texture] [--json]

Every job goes through the real service (SQLite, blob store, SSE following, downloads) against
`tests/fakes/meshy_api/server.py` with short task durations. Reported: whether every job finished (none
failed, none lost), wall time, job durations, and how many Meshy requests each job needed, by kind (the
SSE stream keeps polling away). `--account-limit` makes the double refuse tasks beyond N at once (429
NoMoreConcurrentTasks), so jobs wait in Lumi's queue. Not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.services.generate3d import (
    GenerationConfig,
    GenerationOptions,
    GenerationRequest,
    GenerationService,
    JobSnapshot,
    KeywordEnhancer,
    PromptChecker,
    PromptEnhancer,
)
from inference.remote.meshy import MeshyClient
from storage.blob_stores import LocalBlobStore
from storage.db import Database, default_sqlite_url
from storage.models import JobState
from storage.repo import assets as repo_assets
from tests.fakes.meshy_api.server import FakeMeshy, FakeMeshyConfig

SUBJECTS = ("fox", "teapot", "lantern", "robot", "chair", "castle", "sword", "mushroom", "bicycle", "owl")


def _kind(method: str, path: str) -> str:
    if path.startswith("/assets/"):
        return "asset downloads"
    if path.endswith("/stream"):
        return "streams opened"
    if method == "POST":
        return "creates (incl. refused)"
    return f"{method} task reads" if "/text-to-3d/" in path else f"{method} other"


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    config = FakeMeshyConfig(
        pending_s=0.05,
        preview_s=args.preview_s,
        refine_s=args.refine_s,
        keepalive_s=1.0,
        stream_tick_s=0.05,
        max_concurrent_tasks=args.account_limit,
    )
    with tempfile.TemporaryDirectory(prefix="lumi-bench-") as folder:
        root = Path(folder)
        database = Database(default_sqlite_url(root))
        await database.upgrade()
        async with FakeMeshy(config=config, credits=10**9) as meshy:
            client = MeshyClient(meshy.api_key, base_url=meshy.base_url)
            service = GenerationService(
                database=database,
                blobs=LocalBlobStore(root / "blobs"),
                meshy=client,
                enhancer=PromptEnhancer([KeywordEnhancer()]),
                checker=PromptChecker(use_profanity_model=False),
                config=GenerationConfig(
                    max_concurrent_jobs=args.jobs, queue_retry_s=0.5, poll_initial_s=0.5, poll_max_s=2.0
                ),
            )
            options = GenerationOptions(texture=not args.no_texture, formats=("glb", "obj"))
            entered: dict[tuple[str, JobState], float] = {}

            def note(snapshot: JobSnapshot) -> None:
                entered.setdefault((snapshot.job_id, snapshot.state), time.monotonic())

            service.add_listener(note)
            started = time.monotonic()
            jobs = await asyncio.gather(
                *(
                    service.submit(
                        GenerationRequest(
                            user_id=index,
                            prompt=f"a {SUBJECTS[index % len(SUBJECTS)]} number {index}",
                            options=options,
                            enforce_quotas=False,
                        ),
                        checked=True,
                    )
                    for index in range(args.jobs)
                )
            )
            finals = await asyncio.gather(*(service.wait(job.id) for job in jobs))
            wall = time.monotonic() - started
            async with database.session() as session:
                stored = [
                    len(await repo_assets.list_job_assets(session=session, job_id=job.id)) for job in jobs
                ]
            states = Counter(job.state.value for job in finals)
            durations = [
                (job.finished_at - job.created_at).total_seconds()
                for job in finals
                if job.finished_at is not None
            ]
            server_counts = Counter(_kind(r.method, r.path) for r in meshy.requests)
            stage_s: dict[str, list[float]] = {}
            order = list(JobState)
            for (job_id, state), at in entered.items():
                following = [entered.get((job_id, later)) for later in order[order.index(state) + 1 :]]
                ended = next((moment for moment in following if moment is not None), None)
                if ended is not None:
                    stage_s.setdefault(state.value, []).append(ended - at)
            refused = sum(1 for r in meshy.requests if r.method == "POST") - len(meshy.tasks)
            await service.close()
        await database.close()
    per_job = {kind: round(count / args.jobs, 2) for kind, count in sorted(client.request_counts.items())}
    api_requests = sum(count for kind, count in client.request_counts.items() if kind != "GET asset")
    return {
        "jobs": args.jobs,
        "textured": not args.no_texture,
        "account_limit": args.account_limit,
        "states": dict(states),
        "lost": args.jobs - sum(states.values()),
        "jobs_with_files": sum(1 for count in stored if count > 0),
        "wall_s": round(wall, 2),
        "job_s_p50": round(statistics.median(durations), 2) if durations else None,
        "job_s_p95": round(_percentile(durations, 0.95), 2) if durations else None,
        "stage_s_mean": {name: round(statistics.mean(values), 2) for name, values in stage_s.items()},
        "meshy_tasks_created": len(meshy.tasks),
        "create_requests_refused_429": refused,
        "api_requests_per_job": round(api_requests / args.jobs, 2),
        "requests_per_job_by_kind": per_job,
        "server_seen": dict(server_counts),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--preview-s", type=float, default=0.5)
    parser.add_argument("--refine-s", type=float, default=0.5)
    parser.add_argument("--account-limit", type=int, default=None, help="Meshy tasks allowed at once")
    parser.add_argument("--no-texture", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:>28}: {value}")
    ok = report["states"] == {JobState.DONE.value: args.jobs} and report["lost"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
