"""The distributed bench's table: both runs side by side, the ratios two processes / one, and the targets.

Figures over several rounds are shown as their median and range; a ratio is taken within each round
(the two runs of a round ran back to back), then summarised the same way.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

TAKEOVER_TARGET_S = 10.0
ONE, TWO = "1 process", "2 processes"

Run = dict[str, Any]


def spread(values: Sequence[float], digits: int = 2) -> str:
    """Median and range over rounds, as ``1.23 (1.10–1.40)``; one value alone."""
    if not values:
        return "—"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def takeover_note(run: Run) -> str:
    jobs = run["jobs"]
    if jobs["killed_pid"] is None:
        return "no kill"
    if jobs["held_at_kill"] == 0:
        return "held no job at the kill"
    if jobs["never_taken_over"]:
        return f"{jobs['never_taken_over']} of {jobs['held_at_kill']} never taken over"
    return f"{jobs['takeover_s']:.2f} s for {jobs['held_at_kill']} jobs"


def targets(report: dict[str, Any], heartbeat_timeout_s: float) -> dict[str, bool]:
    runs = [run for name in (ONE, TWO) for run in report["runs"][name]]
    killed = report["runs"][TWO]
    return {
        "cases == posts": all(
            r["moderation"]["missing"] == 0 and r["moderation"]["duplicates"] == 0 for r in runs
        ),
        "0 jobs lost": all(r["jobs"]["lost"] == 0 for r in runs),
        "0 duplicate Meshy tasks": all(
            not any(r["jobs"]["duplicate_tasks"].values()) and r["jobs"]["orphan_tasks"] == 0 for r in runs
        ),
        f"takeover <= {TAKEOVER_TARGET_S:g} s (heartbeat timeout {heartbeat_timeout_s:g} s)": bool(killed)
        and all(
            r["jobs"]["takeover_s"] is not None and r["jobs"]["takeover_s"] <= TAKEOVER_TARGET_S
            for r in killed
        ),
    }


def _row(label: str, one: str, two: str, ratio: str = "") -> str:
    return f"  {label:<40} {one:>22} {two:>22} {ratio:>16}"


def _numeric(report: dict[str, Any], label: str, pick: Callable[[Run], float], digits: int = 2) -> str:
    ones, twos = report["runs"][ONE], report["runs"][TWO]
    ratios = [pick(b) / pick(a) for a, b in zip(ones, twos, strict=False) if pick(a) > 0]
    return _row(
        label,
        spread([pick(r) for r in ones], digits),
        spread([pick(r) for r in twos], digits),
        spread(ratios, 2) if ratios else "—",
    )


def _text(report: dict[str, Any], label: str, show: Callable[[Run], str]) -> str:
    cells = [", ".join(show(r) for r in report["runs"][name]) for name in (ONE, TWO)]
    return _row(label, *cells)


def print_table(report: dict[str, Any]) -> None:
    settings = report["settings"]
    interval = settings["submit_interval_s"]
    sent = f"{interval:g} s apart" if interval > 0 else "sent at once"
    print(
        f"distributed mode: {settings['images']} images, {settings['jobs']} 3D jobs {sent} "
        f"(at most {settings['max_concurrent_jobs']} at once), Meshy preview {settings['preview_s']:g} s + "
        f"refine {settings['refine_s']:g} s, {settings['guilds_per_shard']} guild(s) on each of 2 shards, "
        f"{settings['rounds']} round(s); median (range) over rounds"
    )
    print(_row("", ONE, TWO, "2 / 1"))
    print(_numeric(report, "moderation images/s", lambda r: r["moderation"]["images_per_s"]))
    print(_numeric(report, "seconds to the last verdict", lambda r: r["moderation"]["seconds"], 1))
    print(_text(report, "cases / posts", lambda r: f"{r['moderation']['cases']}/{r['moderation']['posts']}"))
    print(
        _text(
            report,
            "posts missing, duplicate cases",
            lambda r: f"{r['moderation']['missing']}, {r['moderation']['duplicates']}",
        )
    )
    print(_numeric(report, "3D jobs/s", lambda r: r["jobs"]["jobs_per_s"]))
    print(_numeric(report, "seconds to the last job done", lambda r: r["jobs"]["seconds"], 1))
    print(_text(report, "jobs done / submitted", lambda r: f"{r['jobs']['done']}/{r['jobs']['submitted']}"))
    print(_text(report, "jobs lost (failed)", lambda r: f"{r['jobs']['lost']} ({r['jobs']['failed']})"))
    print(
        _text(
            report,
            "duplicate Meshy tasks: preview, refine",
            lambda r: (
                f"{r['jobs']['duplicate_tasks'].get('preview', 0)}, "
                f"{r['jobs']['duplicate_tasks'].get('refine', 0)}"
            ),
        )
    )
    print(_text(report, "jobs queued only by a reconcile", lambda r: str(r["jobs"]["queued_late"])))
    print(_text(report, "Meshy tasks of no job", lambda r: str(r["jobs"]["orphan_tasks"])))
    print(_numeric(report, "most jobs running at once (sampled)", lambda r: r["jobs"]["peak_running"], 0))
    print(
        _text(
            report,
            "jobs done per process (pid: jobs)",
            lambda r: " ".join(f"{pid}:{n}" for pid, n in sorted(r["jobs"]["done_per_process"].items())),
        )
    )
    print(_text(report, "takeover after SIGKILL", takeover_note))
    print(_text(report, "tracebacks in the processes' logs", lambda r: str(r["tracebacks_in_logs"])))
    met = report["targets"]
    print("targets: " + "; ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in met.items()))
