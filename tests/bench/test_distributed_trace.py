"""The distributed bench's timeline of a job with two Meshy tasks for one stage, from a process log and the
local Meshy server's own records."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from inference.remote.meshy import MeshyClient
from tests.e2e.lumi_process import LumiProcess
from tests.fakes.meshy_api.server import FakeMeshy

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from distributed_cluster import Cluster
from distributed_trace import Duplicate, traced

JOB = "0123456789abcdef0123456789abcdef"


def log_line(at: float, message: str) -> str:
    stamp = datetime.fromtimestamp(at)
    return f"{stamp:%Y-%m-%d %H:%M:%S},{stamp.microsecond // 1000:03d} INFO    bot.services.x: {message}\n"


async def test_a_duplicate_is_traced_in_time_order_from_the_logs_and_meshy(tmp_path: Path) -> None:
    started = float(int(time.time()) - 1)  # a whole second, as log stamps show milliseconds
    async with FakeMeshy() as meshy, MeshyClient(meshy.api_key, base_url=meshy.base_url) as client:
        first = await client.create_preview("a fox, detailed")
        await client.create_preview("an owl")  # another job's: not in this job's timeline
        second = await client.create_preview("a fox, detailed")
        log = tmp_path / "lumi-0.log"
        log.write_text(
            log_line(started + 0.1, f"3D job {JOB} claimed by host:1:aa (lease epoch 1)")
            + log_line(started + 0.2, "3D job ffffffffffffffffffffffffffffffff done")
            + log_line(time.time() + 5.0, f"3D job {JOB} claimed by host:2:bb (lease epoch 2)")
        )
        cluster: Any = Cluster(
            plan=None,  # type: ignore[arg-type]
            discord=None,  # type: ignore[arg-type]
            meshy=meshy,
            processes=[LumiProcess({}, log)],
            guilds=[],
            database_url="",
            engine=None,  # type: ignore[arg-type]
        )
        duplicate = Duplicate(
            job_id=JOB,
            stage="preview",
            task_ids=(first, second),
            prompt="a fox, detailed",
            preview_task_ids=(first, second),
            lease_epoch=2,
            lease_owner="host:2:bb",
        )
        (entry,) = traced(cluster, [duplicate], started_wall=started, killed_wall=time.time() + 1.0)

    lines = entry["timeline"]
    assert (entry["job"], entry["stage"], entry["tasks"]) == (JOB, "preview", [first, second])
    what = [line.split(" s  ", 1)[1] for line in lines[:-1]]
    assert what[0] == f"process 0 (pid ?): 3D job {JOB} claimed by host:1:aa (lease epoch 1)"
    assert sorted(what[1:5]) == sorted(
        ["Meshy: create request (preview, 'a fox, detailed')"] * 2
        + [
            f"Meshy: task {first} created (text-to-3d-preview)",
            f"Meshy: task {second} created (text-to-3d-preview)",
        ]
    )
    assert what[5:] == [
        "bench: SIGKILL",
        f"process 0 (pid ?): 3D job {JOB} claimed by host:2:bb (lease epoch 2)",
    ]
    assert lines[0].startswith("t+   0.100 s")
    assert lines[-1] == f"at the end: lease epoch 2, owner host:2:bb, preview tasks {first}, {second}"
