"""bench/distributed.py's smoke preset, end to end: three real Lumi processes, two runs, one SIGKILL.

The figures are timings and stay unchecked; what is checked is that the bench still runs and that its
counts add up: every post got one case, every job sent is accounted for, the killed process is named and
its jobs were taken over, and Meshy saw one task per job and stage.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "distributed.py"


def test_quick_preset_reports_consistent_figures(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", "--logs", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    report = json.loads(finished.stdout)
    settings = report["settings"]
    assert set(report["runs"]) == {"1 process", "2 processes"}
    for name, runs in report["runs"].items():
        (run,) = runs
        moderation, jobs = run["moderation"], run["jobs"]
        assert moderation["posts"] == settings["images"], name
        assert (moderation["cases"], moderation["missing"], moderation["duplicates"]) == (
            settings["images"],
            0,
            0,
        ), name
        assert jobs["submitted"] == settings["jobs"], name
        assert jobs["rows"] == jobs["done"] == jobs["submitted"] and jobs["lost"] == 0, (name, jobs)
        assert sum(jobs["done_per_process"].values()) == jobs["done"], (name, jobs)
        assert jobs["duplicate_tasks"] == {"preview": 0, "refine": 0} and jobs["orphan_tasks"] == 0, (
            name,
            jobs,
        )
        assert run["tracebacks_in_logs"] == 0, name
    one = report["runs"]["1 process"][0]["jobs"]
    assert one["killed_pid"] is None and len(one["done_per_process"]) == 1
    two = report["runs"]["2 processes"][0]["jobs"]
    assert two["killed_pid"] is not None
    # The process killed held jobs (it is the one holding more), and the other took every one of them over.
    assert len(two["done_per_process"]) <= 2
    assert two["held_at_kill"] >= 1 and two["never_taken_over"] == 0 and two["takeover_s"] is not None
    assert report["targets"]["cases == posts"] and report["targets"]["0 jobs lost"]
    # The logs it was told to keep are there, one folder per run.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round-1-1-process", "round-1-2-processes"]
