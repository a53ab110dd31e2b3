"""A 3D job whose worker dies (SIGKILL) or stalls (SIGSTOP) mid-preview, with real `lumi run` processes.

One gateway (and web server) and two workers in distributed mode share a fresh PostgreSQL database, the
local Discord server and the Meshy double, all run by the test. The double holds every preview at 40 %
until the test releases it, so the job sits in its preview stage for as long as the test needs. Workers
use a 5 s heartbeat timeout: a silent worker loses its job to the other one within seconds.

What is proven from outside the processes: the job row (lease owner and epoch), the Meshy double's
request log (one preview task, at most one refine task, no request from a fenced-out worker), and the
Discord server's record of the reply (one message, edited to the end by whichever worker holds the job).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from storage.blob_stores.azure import AzureBlobStore
from tests.e2e.distributed_processes import distributed_env
from tests.e2e.lumi_process import START_S, LumiProcess
from tests.e2e.test_distributed_roles import free_port
from tests.fakes.blob_emulators import Azurite, azurite
from tests.fakes.databases import temporary_postgres_database
from tests.fakes.discord_api.protocol import JsonDict
from tests.fakes.discord_api.server import FakeDiscord, message_text
from tests.fakes.discord_api.world import InteractionRecord
from tests.fakes.meshy_api.server import FakeMeshy, FakeMeshyConfig

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

__all__ = ["azurite"]  # the emulator's fixture, for the test whose files go to Azure

HEARTBEAT_TIMEOUT_S = 5.0
# A worker polls for stale claims every quarter of the timeout; the rest is a loaded 2-core machine.
TAKEOVER_LIMIT_S = HEARTBEAT_TIMEOUT_S + HEARTBEAT_TIMEOUT_S / 4 + 6.0
READY_TITLE = "Your 3D model is ready"
PROMPT = "a brass pocket watch"


@dataclass
class Deployment:
    discord: FakeDiscord
    meshy: FakeMeshy
    engine: AsyncEngine
    gateway: LumiProcess
    workers: tuple[LumiProcess, LumiProcess]
    web_url: str

    async def job_row(self) -> dict[str, Any] | None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(sa.text("SELECT * FROM generation_job"))).mappings().first()
            return None if row is None else dict(row)

    async def queue_rows(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(sa.text("SELECT status::text AS status FROM pgqueuer"))
            return [dict(row) for row in rows.mappings()]

    def worker_of(self, owner: str | None) -> LumiProcess | None:
        """The worker whose lease name (host:pid:tail) is ``owner``."""
        for worker in self.workers:
            assert worker.process is not None
            if owner is not None and owner.split(":")[1] == str(worker.process.pid):
                return worker
        return None


def process_env(
    tmp_path: Path,
    server: FakeDiscord,
    meshy: FakeMeshy,
    database_url: str,
    prefix: str,
    *,
    roles: str,
    port: int,
    files: dict[str, str],
) -> dict[str, str]:
    return distributed_env(
        tmp_path / "data",
        server,
        database_url,
        prefix,
        roles=roles,
        WEB_PORT=str(port),
        MESHY_API_KEY=meshy.api_key,
        MESHY_BASE_URL=meshy.base_url,
        JOB_HEARTBEAT_TIMEOUT_S=str(HEARTBEAT_TIMEOUT_S),
        GENERATION_PROGRESS_INTERVAL_S="0.5",
        **files,
    )


async def file_settings(request: pytest.FixtureRequest) -> dict[str, str]:
    """Where the processes keep the jobs' files: the shared DATA_DIR, or an Azurite container of the
    test's own when the test asks for ``deployment`` with ``indirect`` parameter "azure"."""
    if getattr(request, "param", "shared folder") != "azure":
        return {}
    azurite: Azurite = request.getfixturevalue("azurite")
    container = f"lumi-jobs-{secrets.token_hex(4)}"
    store = AzureBlobStore(azurite.connection_string, container)
    try:
        await store.create_container()
    finally:
        await store.close()
    return {
        "BLOB_STORE_URL": f"azure://{container}",
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "LUMI_SHARED_DATA_DIR": "false",
    }


@pytest.fixture
async def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str
) -> AsyncIterator[Deployment]:
    files = await file_settings(request)
    port = free_port()
    async with (
        temporary_postgres_database() as database_url,
        # A child process answers more slowly than an in-process client; Discord's 3 s would be flaky.
        FakeDiscord(interaction_deadline_s=15.0) as server,
        FakeMeshy(config=FakeMeshyConfig(preview_s=2.0, refine_s=1.0)) as meshy,
    ):
        engine = create_async_engine(database_url, poolclass=NullPool)

        def lumi(name: str, roles: str) -> LumiProcess:
            env = process_env(
                tmp_path, server, meshy, database_url, redis_prefix, roles=roles, port=port, files=files
            )
            return LumiProcess(env, tmp_path / f"{name}.log")

        gateway = lumi("gateway", "gateway,web")
        workers = (lumi("worker-1", "worker"), lumi("worker-2", "worker"))
        everyone = (gateway, *workers)
        try:
            # The gateway migrates the empty database first; the workers then find it at the head.
            await gateway.start()
            await gateway.wait_for_log("connected as")
            await asyncio.gather(*(worker.start() for worker in workers))
            await asyncio.gather(*(worker.wait_for_log("3D jobs: claiming as") for worker in workers))
            # The prompt check needs the profanity model, loaded in the background at start.
            await gateway.wait_for_log("English profanity model loaded")
            yield Deployment(server, meshy, engine, gateway, workers, f"http://127.0.0.1:{port}")
        finally:
            for process in everyone:
                if process.process is not None and process.process.returncode is None:
                    # A stopped process must run again to hear SIGTERM.
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.process.pid, signal.SIGCONT)
            await asyncio.gather(*(process.stop() for process in everyone))
            await engine.dispose()


def is_result(message: JsonDict) -> bool:
    return any((embed.get("title") or "") == READY_TITLE for embed in message.get("embeds", []))


async def until(what: str, check: Any, timeout: float = START_S, every: float = 0.05) -> Any:  # noqa: ASYNC109
    """Poll ``check`` (async, returning a value or None) until it returns a value."""
    deadline = time.monotonic() + timeout
    while (value := await check()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(every)
    return value


async def start_job_held_in_preview(deployment: Deployment) -> tuple[InteractionRecord, LumiProcess]:
    """`/3d create` in the guild; returns the interaction and the worker that claimed the job, once the
    job row says it is in its preview stage and that worker is following Meshy's (held) preview task."""
    server, meshy = deployment.discord, deployment.meshy
    meshy.hold("preview", at_progress=40)
    interaction = await server.slash_command("3d", subcommand="create", options={"prompt": PROMPT})
    await server.wait_for_callback(interaction, timeout=15)
    await asyncio.wait_for(meshy.stream_opened.wait(), START_S)

    async def owner_in_preview() -> LumiProcess | None:
        row = await deployment.job_row()
        if row is None or row["state"] != "preview" or row["preview_task_id"] is None:
            return None
        return deployment.worker_of(row["lease_owner"])

    owner = await until("the job's preview stage under a worker's lease", owner_in_preview)
    row = await deployment.job_row()
    assert row is not None and row["lease_epoch"] == 1
    return server.interactions[int(interaction["id"])], owner


async def takeover(deployment: Deployment, old: LumiProcess) -> tuple[LumiProcess, float]:
    """Wait until the other worker claims the job; returns it and the seconds that took from now."""
    started = time.monotonic()

    async def new_owner() -> LumiProcess | None:
        row = await deployment.job_row()
        if row is None or row["lease_epoch"] < 2:
            return None
        assert row["lease_epoch"] == 2, row
        return deployment.worker_of(row["lease_owner"])

    owner = await until("another worker's claim", new_owner, timeout=TAKEOVER_LIMIT_S + 10)
    elapsed = time.monotonic() - started
    assert owner is not old
    return owner, elapsed


async def result_shown(deployment: Deployment, record: InteractionRecord) -> JsonDict:
    async def result() -> JsonDict | None:
        return next((reply for reply in record.replies if is_result(reply)), None)

    return await until("the 3D result in the Discord reply", result, timeout=START_S)


def one_reply_message(record: InteractionRecord, edits_since: int, server: FakeDiscord) -> None:
    """The job was shown in one message from start to end: the deferred reply, edited in place."""
    assert record.original_message_id is not None
    assert {int(reply["id"]) for reply in record.replies} == {record.original_message_id}
    later = [
        request
        for request in server.requests[edits_since:]
        if request.method == "PATCH" and f"/webhooks/{server.application_id}/{record.token}/" in request.path
    ]
    assert later, "the new owner never edited the reply"
    targets = {request.path.rsplit("/", 1)[1] for request in later}
    assert targets <= {"@original", str(record.original_message_id)}, targets
    posted = [r for r in server.requests[edits_since:] if r.method == "POST" and record.token in r.path]
    assert not posted, posted


def meshy_creates(meshy: FakeMeshy) -> list[str]:
    return [str(request.json["mode"]) for request in meshy.create_requests]


async def downloaded(url: str) -> tuple[str, bytes]:
    """A download link of the result: Lumi's answer (a redirect to the store) and the file's bytes."""
    async with aiohttp.ClientSession() as http:
        async with http.get(url, allow_redirects=False) as response:
            assert response.status == 302, (url, response.status, await response.text())
            location = response.headers["Location"]
        async with http.get(location) as response:
            assert response.status == 200, (location, response.status)
            return location, await response.read()


# Its files go to Azure Blob (Azurite), where the result's links, signed by the gateway, lead.
@pytest.mark.parametrize("deployment", ["azure"], indirect=True)
async def test_a_killed_worker_loses_its_job_to_the_other_which_finishes_it(
    deployment: Deployment, azurite: Azurite
) -> None:
    server, meshy = deployment.discord, deployment.meshy
    record, owner = await start_job_held_in_preview(deployment)
    edits_since = len(server.requests)

    await owner.kill()
    successor, takeover_s = await takeover(deployment, owner)
    # The figure docs/distributed.md quotes (shown with `pytest -s` or `-rP`).
    print(f"\ntakeover after SIGKILL: {takeover_s:.2f} s (heartbeat timeout {HEARTBEAT_TIMEOUT_S:g} s)")
    assert takeover_s < TAKEOVER_LIMIT_S

    meshy.release()
    result = await result_shown(deployment, record)
    assert PROMPT in message_text(result)
    row = await deployment.job_row()
    assert row is not None and row["state"] == "done" and row["lease_epoch"] == 2
    creates = meshy_creates(meshy)
    assert creates.count("preview") == 1 and creates.count("refine") <= 1, creates
    assert len(meshy.tasks) == len(creates)
    one_reply_message(record, edits_since, server)
    assert f"3D job {row['id']} done" in successor.log()
    assert await until("an empty job queue", lambda: _empty(deployment), timeout=15)
    assert "Traceback" not in successor.log() + deployment.gateway.log()

    # The links the gateway posted open (on the web process) and lead to the successor's files in Azure.
    links = dict(re.findall(r"\[([^\]]+)\]\((http[^)]+)\)", message_text(result)))
    assert links["GLB"].startswith(f"{deployment.web_url}/files/")
    location, body = await downloaded(links["GLB"])
    assert location.startswith(azurite.blob_endpoint)
    assert body == meshy.asset_bytes(row["refine_task_id"], "model.glb")


async def _empty(deployment: Deployment) -> bool | None:
    return True if await deployment.queue_rows() == [] else None


async def test_a_paused_worker_that_wakes_after_the_takeover_writes_nothing_and_asks_meshy_nothing(
    deployment: Deployment,
) -> None:
    server, meshy = deployment.discord, deployment.meshy
    record, owner = await start_job_held_in_preview(deployment)
    assert owner.process is not None
    edits_since = len(server.requests)

    os.kill(owner.process.pid, signal.SIGSTOP)
    successor, takeover_s = await takeover(deployment, owner)
    print(f"\ntakeover after SIGSTOP: {takeover_s:.2f} s (heartbeat timeout {HEARTBEAT_TIMEOUT_S:g} s)")
    meshy.release()
    result = await result_shown(deployment, record)
    finished = await deployment.job_row()
    assert finished is not None and finished["state"] == "done" and finished["lease_epoch"] == 2

    woken_at = time.monotonic()
    owner_log_before = len(owner.log())
    os.kill(owner.process.pid, signal.SIGCONT)
    await owner.wait_for_log(f"3D job {finished['id']}: lease lost", timeout=30)
    # Time for anything the woken worker still had queued (progress edits, heartbeats, a queue hand-back).
    await asyncio.sleep(2 * HEARTBEAT_TIMEOUT_S / 4 + 1.0)

    assert await deployment.job_row() == finished
    assert [r for r in meshy.requests if r.at >= woken_at] == []
    assert await deployment.queue_rows() == []
    creates = meshy_creates(meshy)
    assert creates.count("preview") == 1 and creates.count("refine") <= 1, creates
    # The reply still shows the result: the woken worker did not edit it back to an old progress view.
    assert is_result(result) and PROMPT in message_text(result)
    one_reply_message(record, edits_since, server)
    assert owner.process.returncode is None
    woken_log = owner.log()[owner_log_before:]
    assert "Traceback" not in woken_log, woken_log
    assert "Traceback" not in successor.log()


async def test_a_worker_paused_while_its_create_request_was_unanswered_asks_meshy_nothing_on_waking(
    deployment: Deployment,
) -> None:
    server, meshy = deployment.discord, deployment.meshy
    # The first preview create is accepted and never answered: it creates nothing at Meshy.
    meshy.hang_next(1, method="POST", path_contains="/text-to-3d")
    interaction = await server.slash_command("3d", subcommand="create", options={"prompt": PROMPT})
    await server.wait_for_callback(interaction, timeout=15)
    record = server.interactions[int(interaction["id"])]

    async def owner_sent_create() -> LumiProcess | None:
        row = await deployment.job_row()
        if row is None or meshy.held_requests < 1:
            return None
        return deployment.worker_of(row["lease_owner"])

    owner = await until("the claiming worker's create request", owner_sent_create)
    assert owner.process is not None
    os.kill(owner.process.pid, signal.SIGSTOP)
    successor, _ = await takeover(deployment, owner)
    # The new holder finds no task at Meshy for the job's request time, creates its own and finishes.
    await result_shown(deployment, record)
    finished = await deployment.job_row()
    assert finished is not None and finished["state"] == "done" and finished["lease_epoch"] == 2

    woken_at = time.monotonic()
    os.kill(owner.process.pid, signal.SIGCONT)
    # Its request times out: it may have created a task, but the job is another worker's now.
    await owner.wait_for_log(f"3D job {finished['id']}: lease lost", timeout=30)
    await asyncio.sleep(1.0)

    assert [r for r in meshy.requests if r.at >= woken_at] == []
    assert meshy_creates(meshy).count("preview") == 2
    previews = [task for task in meshy.tasks.values() if task.type == "text-to-3d-preview"]
    assert [task.id for task in previews] == [finished["preview_task_id"]]
    assert await deployment.job_row() == finished
    assert "Traceback" not in successor.log()
