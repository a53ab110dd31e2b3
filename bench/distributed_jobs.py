"""The 3D half of the distributed bench: N `/3d create` commands at once against the local Meshy server,
and, when two processes run, the one holding more unfinished jobs SIGKILLed once half of them are done.

Figures come from the job rows (`generation_job`: state, lease owner, finish time) and from the Meshy
server's own tasks, never from the processes' word:

- jobs/s: jobs done over the time from the first command to the last job finished;
- lost: commands sent that did not end as a done job (refused, failed, or still unfinished at the end);
- duplicate Meshy tasks: per job and stage (preview, refine), tasks beyond the first. A preview task
  belongs to the job whose row names it or, if no row does, whose enhanced prompt it was created with;
  a refine task to the job of the preview it refines. Each job and stage with more than one task comes
  with its timeline (`distributed_trace`): claims and epochs, create requests, tasks, the kill;
- queued late: jobs stored but not queued at once (the log line of `GenerationService`), which wait
  for a worker's next reconcile;
- takeover: the jobs the killed process held (its pid in `lease_owner`, unfinished) when it died, and
  the time from the kill until the last of them was claimed by the other process.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from distributed_cluster import Cluster
from distributed_trace import Duplicate, traced

SUBJECTS = ("fox", "teapot", "lantern", "robot", "chair", "castle", "sword", "mushroom", "bicycle", "owl")
TERMINAL = {"done", "failed", "canceled"}
RUNNING = {"enhancing", "preview", "refining", "downloading"}
POLL_S = 0.25
TAKEOVER_POLL_S = 0.1
# With every row terminal and fewer rows than commands, how long to wait for a late row before ending.
LATE_ROW_S = 15.0
NOT_QUEUED = "is stored but could not be queued now"

JOB_ROWS = sa.text(
    "SELECT id, state, lease_owner, lease_epoch, enhanced_prompt, preview_task_id, "
    "extract(epoch FROM finished_at) FROM generation_job"
)


@dataclass(frozen=True)
class JobRow:
    id: str
    state: str
    owner: str | None
    epoch: int | None
    enhanced_prompt: str | None
    preview_task_id: str | None
    finished_at: float | None


@dataclass
class JobFigures:
    submitted: int
    rows: int = 0
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    duplicate_tasks: dict[str, int] = field(default_factory=dict)
    orphan_tasks: int = 0
    # Each job and stage with more than one Meshy task, with its timeline (see distributed_trace).
    duplicates: list[dict[str, object]] = field(default_factory=list)
    done_per_process: dict[str, int] = field(default_factory=dict)
    peak_running: int = 0
    killed_pid: int | None = None
    held_at_kill: int = 0
    takeover_s: float | None = None
    never_taken_over: int = 0
    # Stored but not queued at once (the processes' logs say so): only a worker's reconcile runs them.
    queued_late: int = 0

    @property
    def lost(self) -> int:
        return self.submitted - self.done

    @property
    def jobs_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


async def job_rows(cluster: Cluster) -> list[JobRow]:
    async with cluster.engine.connect() as connection:
        rows = await connection.execute(JOB_ROWS)
        return [
            JobRow(str(i), str(state), owner, epoch, prompt, preview, None if at is None else float(at))
            for i, state, owner, epoch, prompt, preview, at in rows
        ]


def owner_pid(owner: str | None) -> str:
    """The pid in a lease owner (`host:pid:tail`), which names the process that ran the job."""
    parts = (owner or "").split(":")
    return parts[-2] if len(parts) >= 3 else "none"


async def submit_jobs(cluster: Cluster, count: int, interval_s: float) -> None:
    """`/3d create` in the general channel of every guild in turn, `interval_s` apart (0: all at once,
    before any is answered)."""
    for index in range(count):
        if index and interval_s > 0:
            await asyncio.sleep(interval_s)
        guild = cluster.guilds[index % len(cluster.guilds)]
        subject = SUBJECTS[index % len(SUBJECTS)]
        await cluster.discord.slash_command(
            "3d",
            subcommand="create",
            user="alice",
            channel=guild.channel_named("general"),
            options={"prompt": f"a {subject} model number {index}"},
        )


def find_duplicates(cluster: Cluster, rows: list[JobRow], figures: JobFigures) -> list[Duplicate]:
    by_id = {row.id: row for row in rows}
    by_preview_id = {row.preview_task_id: row.id for row in rows if row.preview_task_id}
    by_prompt = {row.enhanced_prompt: row.id for row in rows if row.enhanced_prompt}
    tasks = list(cluster.meshy.tasks.values())
    preview_job: dict[str, str] = {}
    for task in tasks:
        if task.type == "text-to-3d-preview":
            job = by_preview_id.get(task.id) or by_prompt.get(task.prompt)
            if job is not None:
                preview_job[task.id] = job
    per_stage: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    for task in sorted(tasks, key=lambda task: task.created_ms):
        if task.type == "text-to-3d-preview":
            job = preview_job.get(task.id)
        else:
            job = preview_job.get(str(task.request.get("preview_task_id")))
        if job is None:
            figures.orphan_tasks += 1
            continue
        per_stage[(job, "refine" if task.type == "text-to-3d-refine" else "preview")].append(task.id)
    figures.duplicate_tasks = {
        stage: sum(len(ids) - 1 for (_, s), ids in per_stage.items() if s == stage)
        for stage in ("preview", "refine")
    }
    previews_of: defaultdict[str, list[str]] = defaultdict(list)
    for task_id, job in preview_job.items():
        previews_of[job].append(task_id)
    return [
        Duplicate(
            job_id=job,
            stage=stage,
            task_ids=tuple(ids),
            prompt=by_id[job].enhanced_prompt,
            preview_task_ids=tuple(previews_of[job]),
            lease_epoch=by_id[job].epoch,
            lease_owner=by_id[job].owner,
        )
        for (job, stage), ids in sorted(per_stage.items())
        if len(ids) > 1
    ]


async def kill_and_note_held(cluster: Cluster, figures: JobFigures) -> tuple[float, float, set[str]]:
    """SIGKILL the process holding the most unfinished jobs; the jobs it held, read once it is dead."""
    pids = {str(p.process.pid): p for p in cluster.processes if p.process is not None}
    held_by = Counter(owner_pid(r.owner) for r in await job_rows(cluster) if r.state not in TERMINAL)
    pid = max(pids, key=lambda candidate: held_by.get(candidate, 0))
    await pids[pid].kill()
    killed_at, killed_wall = time.monotonic(), time.time()
    figures.killed_pid = int(pid)
    held = {r.id for r in await job_rows(cluster) if owner_pid(r.owner) == pid and r.state not in TERMINAL}
    figures.held_at_kill = len(held)
    return killed_at, killed_wall, held


async def measure_jobs(
    cluster: Cluster,
    count: int,
    *,
    kill: bool,
    timeout: float,  # noqa: ASYNC109
    submit_interval_s: float = 0.0,
) -> JobFigures:
    figures = JobFigures(submitted=count)
    started_wall, started = time.time(), time.monotonic()
    await submit_jobs(cluster, count, submit_interval_s)
    killed_at: float | None = None
    killed_wall: float | None = None
    held: set[str] = set()
    taken: dict[str, float] = {}
    dead_pid = ""
    rows: list[JobRow] = []
    last_change, last_count = time.monotonic(), -1
    while time.monotonic() - started < timeout:
        rows = await job_rows(cluster)
        now = time.monotonic()
        if len(rows) != last_count:
            last_change, last_count = now, len(rows)
        figures.peak_running = max(figures.peak_running, sum(r.state in RUNNING for r in rows))
        done = sum(r.state == "done" for r in rows)
        if kill and killed_at is None and done >= count / 2:
            killed_at, killed_wall, held = await kill_and_note_held(cluster, figures)
            dead_pid = str(figures.killed_pid)
            continue
        for row in rows:
            if row.id in held and row.id not in taken and owner_pid(row.owner) != dead_pid:
                taken[row.id] = now
        finished = rows and all(r.state in TERMINAL for r in rows)
        if finished and (len(rows) >= count or now - last_change > LATE_ROW_S):
            break
        await asyncio.sleep(TAKEOVER_POLL_S if held - taken.keys() else POLL_S)
    figures.rows = len(rows)
    figures.done = sum(r.state == "done" for r in rows)
    figures.failed = sum(r.state == "failed" for r in rows)
    last = max((r.finished_at for r in rows if r.finished_at is not None), default=time.time())
    figures.seconds = max(0.0, last - started_wall)
    figures.done_per_process = dict(Counter(owner_pid(r.owner) for r in rows if r.state == "done"))
    if killed_at is not None:
        figures.never_taken_over = len(held - taken.keys())
        if held and not figures.never_taken_over:
            figures.takeover_s = max(taken.values()) - killed_at
    figures.queued_late = cluster.logs().count(NOT_QUEUED)
    duplicates = find_duplicates(cluster, rows, figures)
    figures.duplicates = traced(cluster, duplicates, started_wall=started_wall, killed_wall=killed_wall)
    return figures
