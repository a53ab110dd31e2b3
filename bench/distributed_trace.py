"""The timeline of each 3D job the distributed bench found with more than one Meshy task for a stage: what
the processes logged about it (claims and their lease epochs, tasks recorded or adopted, leases lost,
late tasks deleted or left), every create request Meshy received for it and every task it holds for it,
and the SIGKILL, in time order. A duplicate is then explained by the run that made it, not guessed at.

Times are seconds from the first `/3d` command (wall clock: the processes' log stamps and the Meshy
server's clock are both on this machine).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from distributed_cluster import Cluster

# `2026-12-03 08:47:59,798 INFO    logger: message` (Lumi's log format; the stamp is local time).
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) +\w+ +[\w.]+: (.*)$")
# Request bodies carry long prompts; the timeline needs only their start.
PROMPT_SHOWN = 40


@dataclass(frozen=True)
class Duplicate:
    """One job and stage with more than one task at Meshy; the tasks and the job's row at the end."""

    job_id: str
    stage: str
    task_ids: tuple[str, ...]
    prompt: str | None
    preview_task_ids: tuple[str, ...]
    lease_epoch: int | None
    lease_owner: str | None


def log_events(cluster: Cluster, job_id: str) -> list[tuple[float, str]]:
    """Every line a process logged about the job, as (wall time, `process N (pid P): message`)."""
    events: list[tuple[float, str]] = []
    for index, process in enumerate(cluster.processes):
        pid = process.process.pid if process.process is not None else "?"
        for line in process.log().splitlines():
            if job_id not in line:
                continue
            found = LOG_LINE.match(line)
            if found is None:
                continue
            stamp = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
            events.append(
                (stamp + int(found.group(2)) / 1000, f"process {index} (pid {pid}): {found.group(3)}")
            )
    return events


def meshy_events(cluster: Cluster, duplicate: Duplicate) -> list[tuple[float, str]]:
    """The create requests Meshy received for the job's stage, and the tasks it holds for it."""
    meshy = cluster.meshy
    to_wall = time.time() - time.monotonic()
    events: list[tuple[float, str]] = []
    for request in meshy.create_requests:
        body: dict[str, Any] = request.json if isinstance(request.json, dict) else {}
        mode = body.get("mode")
        if mode != duplicate.stage:
            continue
        if mode == "preview" and body.get("prompt") != duplicate.prompt:
            continue
        if mode == "refine" and body.get("preview_task_id") not in duplicate.preview_task_ids:
            continue
        shown = str(body.get("prompt") or body.get("preview_task_id"))[:PROMPT_SHOWN]
        events.append((request.at + to_wall, f"Meshy: create request ({mode}, {shown!r})"))
    for task_id in duplicate.task_ids:
        task = meshy.tasks.get(task_id)
        if task is not None:
            events.append((task.created_ms / 1000, f"Meshy: task {task_id} created ({task.type})"))
    return events


def timeline(
    cluster: Cluster, duplicate: Duplicate, *, started_wall: float, killed_wall: float | None
) -> list[str]:
    events = log_events(cluster, duplicate.job_id) + meshy_events(cluster, duplicate)
    if killed_wall is not None:
        events.append((killed_wall, "bench: SIGKILL"))
    lines = [f"t+{at - started_wall:8.3f} s  {what}" for at, what in sorted(events)]
    lines.append(
        f"at the end: lease epoch {duplicate.lease_epoch}, owner {duplicate.lease_owner}, "
        f"{duplicate.stage} tasks {', '.join(duplicate.task_ids)}"
    )
    return lines


def traced(
    cluster: Cluster,
    duplicates: Iterable[Duplicate],
    *,
    started_wall: float,
    killed_wall: float | None,
) -> list[dict[str, Any]]:
    """Each duplicate with its timeline, for the bench's report."""
    return [
        {
            "job": duplicate.job_id,
            "stage": duplicate.stage,
            "tasks": list(duplicate.task_ids),
            "timeline": timeline(cluster, duplicate, started_wall=started_wall, killed_wall=killed_wall),
        }
        for duplicate in duplicates
    ]


def print_traces(runs: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """After the table: the timeline of every duplicate of every run (nothing when there is none)."""
    for name, run in runs:
        for entry in run["jobs"].get("duplicates", []):
            print(f"\n{name}: job {entry['job']} has {len(entry['tasks'])} {entry['stage']} tasks")
            for line in entry["timeline"]:
                print(f"  {line}")
