"""The 3D generation service against the local Meshy double, a real SQLite database and a real blob store."""

from __future__ import annotations

import asyncio
import io
import itertools
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.services.generation import (
    GenerationConfig,
    GenerationOptions,
    GenerationRequest,
    GenerationService,
    PromptRejected,
    QuotaExceeded,
    failure_message,
)
from bot.services.generation_progress import (
    EditThrottle,
    JobSnapshot,
    overall_percent,
    progress_text,
    stage_line,
)
from bot.services.prompt_check import PromptChecker
from bot.services.prompt_enhancer import PromptEnhancer
from bot.services.prompt_keywords import KeywordEnhancer
from inference.remote.meshy import MeshyClient, MeshyStatus, MeshyTask, MeshyTaskFailed, RetryPolicy
from storage import repo_guilds, repo_jobs
from storage.blobs import LocalBlobStore
from storage.db import Database, default_sqlite_url
from storage.models import JobState
from tests.fakes.meshy_server import FakeMeshy

GUILD = 900_000_000_000_000_001
CHANNEL = 900_000_000_000_000_002
MOD_CHANNEL = 900_000_000_000_000_003


@dataclass
class Env:
    meshy: FakeMeshy
    database: Database
    blobs: LocalBlobStore
    tmp: Path
    services: list[GenerationService] = field(default_factory=list)
    events: list[JobSnapshot] = field(default_factory=list)

    def service(self, *, api_key: str | None = None, **config: Any) -> GenerationService:
        client = MeshyClient(
            api_key or self.meshy.api_key,
            base_url=self.meshy.base_url,
            retry=RetryPolicy(max_retries=2, backoff_initial=0.01, backoff_max=0.05),
        )
        values: dict[str, Any] = {"queue_retry_s": 0.2, "poll_initial_s": 0.05, "poll_max_s": 0.2}
        values.update(config)
        service = GenerationService(
            database=self.database,
            blobs=self.blobs,
            meshy=client,
            enhancer=PromptEnhancer([KeywordEnhancer()]),
            checker=PromptChecker(use_profanity_model=False),
            config=GenerationConfig(**values),
        )
        service.add_listener(self.events.append)
        self.services.append(service)
        return service

    def states(self, job_id: str) -> list[JobState]:
        seen: list[JobState] = []
        for event in self.events:
            if event.job_id == job_id and (not seen or seen[-1] is not event.state):
                seen.append(event.state)
        return seen


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    database = Database(default_sqlite_url(tmp_path / "db"))
    await database.upgrade()
    async with FakeMeshy() as meshy:
        environment = Env(meshy, database, LocalBlobStore(tmp_path / "blobs"), tmp_path)
        try:
            yield environment
        finally:
            for service in environment.services:
                await service.close()
            await database.close()


def request(
    prompt: str = "a small wooden treasure chest", user_id: int = 1, **options: Any
) -> GenerationRequest:
    return GenerationRequest(
        user_id=user_id,
        prompt=prompt,
        options=GenerationOptions(**options),
        guild_id=GUILD,
        channel_id=CHANNEL,
    )


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_textured_job_runs_every_stage_and_stores_the_files(env: Env) -> None:
    service = env.service()
    job = await service.submit(request())
    done = await service.wait(job.id)

    assert done.state is JobState.DONE, done.error
    assert done.enhanced_prompt is not None and done.enhanced_prompt.startswith(
        "a small wooden treasure chest,"
    )
    assert done.preview_task_id and done.refine_task_id
    assert env.states(job.id) == [
        JobState.QUEUED,
        JobState.ENHANCING,
        JobState.PREVIEW,
        JobState.REFINING,
        JobState.DOWNLOADING,
        JobState.DONE,
    ]
    progress = [event.progress for event in env.events if event.job_id == job.id]
    assert progress == sorted(progress) and progress[-1] == 100
    # One task per stage, and the refine is of this job's preview.
    creates = env.meshy.create_requests
    assert [r.json["mode"] for r in creates] == ["preview", "refine"]
    assert creates[0].json["prompt"] == done.enhanced_prompt
    assert creates[1].json["preview_task_id"] == done.preview_task_id

    result = await service.result(job.id)
    assert {a.name for a in result.models} >= {"glb", "fbx", "obj", "mtl", "usdz"}
    assert {a.name for a in result.textures} == {"base_color", "metallic", "normal", "roughness"}
    glb = result.model("glb")
    assert glb is not None and glb.filename.endswith(".glb") and "treasure-chest" in glb.filename
    stored = await env.blobs.read(glb.key)
    assert stored == env.meshy.asset_bytes(done.refine_task_id, "model.glb")
    assert stored[:4] == b"glTF"
    thumbnail = result.thumbnail
    assert thumbnail is not None
    assert await env.blobs.read(thumbnail.key) == env.meshy.asset_bytes(done.refine_task_id, "preview.png")

    # The OBJ package opens in Blender as is: the OBJ, the material file it names, the textures that names.
    bundle = result.model("zip")
    assert bundle is not None and bundle.filename.endswith("-obj.zip")
    with zipfile.ZipFile(io.BytesIO(await env.blobs.read(bundle.key))) as archive:
        members = set(archive.namelist())
        obj = archive.read(next(name for name in members if name.endswith(".obj"))).decode()
        mtl_name = next(line.split()[1] for line in obj.splitlines() if line.startswith("mtllib"))
        mtl = archive.read(mtl_name).decode()
        texture = next(line.split()[-1] for line in mtl.splitlines() if line.lower().startswith("map_kd"))
        assert archive.read(texture) == env.meshy.asset_bytes(done.refine_task_id, "texture_base_color.png")


async def test_untextured_job_stops_after_the_shape(env: Env) -> None:
    service = env.service()
    job = await service.submit(request(texture=False, enhance=False, formats=("glb", "obj")))
    done = await service.wait(job.id)
    assert done.state is JobState.DONE
    assert done.enhanced_prompt == done.prompt
    assert done.refine_task_id is None
    assert [r.json["mode"] for r in env.meshy.create_requests] == ["preview"]
    assert env.meshy.create_requests[0].json["target_formats"] == ["glb", "obj"]
    result = await service.result(job.id)
    assert {a.name for a in result.models} == {"glb", "obj", "mtl", "zip"}
    assert result.textures == []


async def test_a_full_account_queues_jobs_with_positions_and_none_fail(env: Env) -> None:
    env.meshy.config.max_concurrent_tasks = 1
    service = env.service(queue_retry_s=0.1)
    jobs = [await service.submit(request(f"a fox number {i}", user_id=i, texture=False)) for i in range(4)]
    finished = [await service.wait(job.id) for job in jobs]

    assert [job.state for job in finished] == [JobState.DONE] * 4
    queued_details = [e.detail for e in env.events if "free slot" in e.detail]
    assert any("position 2" in detail for detail in queued_details)
    assert any(e.queue_position == 1 for e in env.events if "free slot" in e.detail)
    # Every job got exactly one task; the other creation attempts were refused with 429.
    assert len({job.preview_task_id for job in finished}) == 4
    assert len(env.meshy.tasks) == 4
    assert len(env.meshy.create_requests) > 4


async def test_jobs_beyond_lumis_own_cap_wait_their_turn(env: Env) -> None:
    service = env.service(max_concurrent_jobs=1)
    jobs = [await service.submit(request(f"a cat number {i}", user_id=i, texture=False)) for i in range(3)]
    finished = [await service.wait(job.id) for job in jobs]
    assert all(job.state is JobState.DONE for job in finished)
    assert any(e.detail == "position 2 in Lumi's queue" for e in env.events)
    # First come, first served.
    assert [job.finished_at for job in finished] == sorted(job.finished_at for job in finished)  # type: ignore[type-var]


async def test_a_restarted_service_finishes_the_job_without_a_second_task(env: Env) -> None:
    env.meshy.config.preview_s = 1.0
    first = env.service()
    job = await first.submit(request())

    async def preview_recorded() -> bool:
        row = await first.get_job(job.id)
        return row is not None and row.preview_task_id is not None

    await wait_until(preview_recorded)
    await first.close()  # shutdown mid-preview: the row stays as it is
    row = await first.get_job(job.id)
    assert row is not None and row.state is JobState.PREVIEW

    second = env.service()
    assert await second.resume_unfinished() == 1
    done = await second.wait(job.id)
    assert done.state is JobState.DONE
    assert done.preview_task_id == row.preview_task_id
    assert [r.json["mode"] for r in env.meshy.create_requests] == ["preview", "refine"]


async def test_a_task_created_but_never_recorded_is_adopted_not_created_again(env: Env) -> None:
    service = env.service()
    # The state a crash leaves between Meshy's answer and the commit: a request time, no task id.
    async with env.database.session() as session:
        job = await repo_jobs.create_job(
            session=session,
            user_id=1,
            prompt="a brass telescope",
            guild_id=GUILD,
            channel_id=CHANNEL,
            options={
                **GenerationOptions(texture=False).to_json(),
                "preview_requested_at": int(time.time() * 1000),
            },
        )
        await repo_jobs.update_job(
            session=session, job=job, state=JobState.PREVIEW, enhanced_prompt="a brass telescope, detailed"
        )
        await session.commit()
    async with MeshyClient(env.meshy.api_key, base_url=env.meshy.base_url) as other:
        orphan = await other.create_preview("a brass telescope, detailed")

    assert await service.resume_unfinished() == 1
    done = await service.wait(job.id)
    assert done.state is JobState.DONE
    assert done.preview_task_id == orphan
    assert len(env.meshy.create_requests) == 1


async def test_failed_meshy_task_fails_the_job_with_its_reason(env: Env) -> None:
    env.meshy.fail_next_tasks(1, message="The server is busy. Please try again later.", mode="preview")
    service = env.service()
    job = await service.submit(request())
    done = await service.wait(job.id)
    assert done.state is JobState.FAILED
    assert done.error is not None and "server is busy" in done.error and "not charged" in done.error
    assert env.events[-1].state is JobState.FAILED and env.events[-1].error == done.error


@pytest.mark.parametrize(
    ("status", "expected"),
    [(402, "out of credits (402)"), (403, "refused this request"), (500, "server error")],
)
async def test_meshy_errors_give_specific_messages(env: Env, status: int, expected: str) -> None:
    env.meshy.inject_error(status, method="POST", count=5)
    service = env.service(create_attempts=1)
    job = await service.submit(request())
    done = await service.wait(job.id)
    assert done.state is JobState.FAILED
    assert done.error is not None and expected in done.error


async def test_a_rejected_key_fails_with_the_operator_hint(env: Env) -> None:
    service = env.service(api_key="msy_wrong_key")
    job = await service.submit(request())
    done = await service.wait(job.id)
    assert done.state is JobState.FAILED
    assert done.error is not None and "MESHY_API_KEY" in done.error


def test_failure_messages_name_the_cause() -> None:
    failed = MeshyTask.from_json(
        {"id": "t", "status": "FAILED", "task_error": {"message": "Internal error."}}
    )
    assert "Internal error." in failure_message(MeshyTaskFailed(failed))
    canceled = MeshyTask(id="t", status=MeshyStatus.CANCELED)
    assert "canceled" in failure_message(MeshyTaskFailed(canceled))
    assert "Lumi's side" in failure_message(RuntimeError("boom"))


async def test_broken_streams_fall_back_to_polling(env: Env) -> None:
    env.meshy.break_streams(2, after_events=1, mode="reset")
    service = env.service()
    job = await service.submit(request(texture=True))
    done = await service.wait(job.id)
    assert done.state is JobState.DONE
    assert env.meshy.count("GET", "/openapi/v2/text-to-3d/") > len(env.meshy.stream_requests)


async def test_drifting_response_shapes_do_not_matter(env: Env) -> None:
    env.meshy.config.drift = True
    env.meshy.config.stream_terminal_short = True
    service = env.service()
    done = await service.wait((await service.submit(request())).id)
    assert done.state is JobState.DONE
    assert (await service.result(done.id)).model("glb") is not None


async def test_cancel_stops_the_job_and_its_meshy_task(env: Env) -> None:
    env.meshy.config.preview_s = 5.0
    service = env.service()
    job = await service.submit(request())

    async def preview_recorded() -> bool:
        row = await service.get_job(job.id)
        return row is not None and row.preview_task_id is not None

    await wait_until(preview_recorded)
    canceled = await service.cancel(job.id, user_id=1)
    assert canceled.state is JobState.CANCELED
    assert service.running_jobs == 0
    assert env.meshy.count("DELETE") == 1
    assert env.events[-1].state is JobState.CANCELED
    with pytest.raises(Exception, match="already ended"):
        await service.cancel(job.id, user_id=1)


async def test_only_the_owner_or_a_moderator_may_cancel(env: Env) -> None:
    env.meshy.config.preview_s = 5.0
    service = env.service()
    job = await service.submit(request())
    with pytest.raises(Exception, match="Only the person"):
        await service.cancel(job.id, user_id=2)
    assert (await service.cancel(job.id, user_id=2, is_moderator=True)).state is JobState.CANCELED


async def test_daily_and_concurrent_quotas(env: Env) -> None:
    env.meshy.config.preview_s = 3.0
    service = env.service(daily_user_limit=2, user_concurrent_limit=1, daily_guild_limit=3)
    first = await service.submit(request())
    with pytest.raises(QuotaExceeded, match="already have 1"):
        await service.submit(request())
    await service.cancel(first.id, user_id=1)
    second = await service.submit(request(texture=False))
    await service.wait(second.id)
    with pytest.raises(QuotaExceeded, match="2 3D generations for today"):
        await service.submit(request())
    # The guild's own limit applies to everyone in it.
    await service.submit(request(user_id=2))
    with pytest.raises(QuotaExceeded, match="This server has used its 3"):
        await service.submit(request(user_id=3))


async def test_blocked_prompt_raises_with_a_moderator_alert(env: Env) -> None:
    async with env.database.session() as session:
        await repo_guilds.update_guild_settings(session=session, guild_id=GUILD, mod_channel_id=MOD_CHANNEL)
        await session.commit()
    service = env.service()
    with pytest.raises(PromptRejected) as caught:
        await service.submit(request("a naked statue"))
    alert = caught.value.alert
    assert alert is not None and alert.mod_channel_id == MOD_CHANNEL and "naked" in alert.reason
    with pytest.raises(PromptRejected) as too_long:
        await service.submit(request("x" * 700))
    assert too_long.value.alert is None
    assert env.meshy.create_requests == []


async def test_refine_textures_the_finished_shape_without_a_new_preview(env: Env) -> None:
    service = env.service()
    plain = await service.wait((await service.submit(request(texture=False))).id)
    child = await service.refine(plain.id, user_id=1, guild_id=GUILD, channel_id=CHANNEL)
    done = await service.wait(child.id)
    assert done.state is JobState.DONE and done.parent_job_id == plain.id
    assert done.preview_task_id == plain.preview_task_id
    assert [r.json["mode"] for r in env.meshy.create_requests] == ["preview", "refine"]
    assert env.states(child.id)[:2] == [JobState.QUEUED, JobState.REFINING]
    assert (await service.result(child.id)).textures


async def test_regenerate_makes_a_new_shape_from_the_same_prompt(env: Env) -> None:
    service = env.service()
    first = await service.wait((await service.submit(request(texture=False))).id)
    again = await service.wait((await service.regenerate(first.id, user_id=1, guild_id=GUILD)).id)
    assert again.state is JobState.DONE
    assert again.enhanced_prompt == first.enhanced_prompt
    assert again.preview_task_id != first.preview_task_id


async def test_delete_removes_files_rows_and_meshy_tasks(env: Env) -> None:
    service = env.service()
    job = await service.wait((await service.submit(request(texture=False))).id)
    result = await service.result(job.id)
    await service.delete(job.id, user_id=1)
    assert await service.get_job(job.id) is None
    for asset in result.assets:
        assert not await env.blobs.exists(asset.key)
    assert env.meshy.count("DELETE") == 1


async def test_live_snapshots_reach_subscribers(env: Env) -> None:
    env.meshy.config.preview_s = 0.5
    service = env.service()
    job = await service.submit(request(texture=False))
    seen: list[JobState] = []
    async with service.subscribe(job.id) as queue:
        while not seen or not seen[-1].is_terminal:
            seen.append((await asyncio.wait_for(queue.get(), 10)).state)
    assert seen[-1] is JobState.DONE


# -- progress display ---------------------------------------------------------------------------------------


def test_progress_text_shows_bar_stage_and_elapsed() -> None:
    created = datetime(2024, 1, 1, tzinfo=UTC)
    snapshot = JobSnapshot(
        job_id="j", state=JobState.PREVIEW, progress=40, stage_progress=70, created_at=created
    )
    text = progress_text(snapshot, now=created + timedelta(seconds=75))
    bar, stage, elapsed = text.splitlines()
    assert bar == "▰" * 8 + "▱" * 12 + " 40%"
    assert stage == "Generating the shape · 70%"
    assert elapsed == "Elapsed: 1 min 15 s"
    queued = JobSnapshot(job_id="j", state=JobState.QUEUED, detail="position 3 in Lumi's queue")
    assert stage_line(queued) == "Queued · position 3 in Lumi's queue"
    assert overall_percent(JobState.REFINING, 50, textured=True) == 72
    assert overall_percent(JobState.PREVIEW, 100, textured=False) == 90


async def test_throttle_sends_at_most_one_edit_per_interval_and_always_the_last() -> None:
    sent: list[tuple[float, int]] = []

    async def send(key: str, value: int) -> None:
        sent.append((time.monotonic(), value))

    throttle: EditThrottle[int] = EditThrottle(send, interval_s=0.3)
    for value in range(10):
        throttle.submit("message", value)
        await asyncio.sleep(0.05)
    await throttle.wait_idle("message")
    values = [value for _, value in sent]
    assert values[0] == 0 and values[-1] == 9  # the first at once, the newest at the end
    assert len(values) <= 3
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(sent)]
    assert all(gap >= 0.29 for gap in gaps), gaps
    await throttle.close()


async def test_throttle_keys_are_independent_and_failures_do_not_stop_it() -> None:
    sent: list[tuple[str, int]] = []

    async def send(key: str, value: int) -> None:
        if value == 1:
            raise RuntimeError("Discord said no")
        sent.append((key, value))

    throttle: EditThrottle[int] = EditThrottle(send, interval_s=0.05)
    throttle.submit("a", 1)
    throttle.submit("b", 5)
    await throttle.wait_idle("a")
    throttle.submit("a", 2)
    await throttle.wait_idle("a")
    await throttle.wait_idle("b")
    assert sent == [("b", 5), ("a", 2)]
    await throttle.close()
