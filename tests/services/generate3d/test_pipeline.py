"""Generation jobs from start to finish against the local Meshy double, a real SQLite database and a real
blob store: the stages and stored files, queueing for a free slot, resuming after a restart, stream
trouble, drifting response shapes and live updates to subscribers."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from dataclasses import replace

from bot.services.generate3d.progress import JobMessage
from bot.services.generate3d.service import GenerationOptions
from inference.remote.meshy import MeshyClient
from inference.remote.meshy.protocol import TASKS_PATH
from storage.models import JobState
from storage.repo import jobs as repo_jobs
from tests.services.generate3d.parts import CHANNEL, GUILD, Env, request, wait_until


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


async def test_the_final_snapshot_carries_what_the_result_message_shows(env: Env) -> None:
    service = env.service()
    asked = replace(request(texture=False), interaction_token="secret-token-123", application_id=77)
    job = await service.submit((await service.admit(asked)).shown_in(4242))
    await service.wait(job.id)
    snapshots = [event for event in env.events if event.job_id == job.id]
    final = snapshots[-1]
    assert final.state is JobState.DONE and final.files is not None
    # Everything the result embed links to, as the service's own result lists it.
    assert list(final.files.assets) == (await service.result(job.id)).assets
    assert final.files.thumbnail is not None and final.files.model("glb") is not None
    assert final.files.expired_note is None
    assert all(snapshot.files is None for snapshot in snapshots[:-1])
    # Where the job is shown, on every snapshot; the token stays out of logs and the web page's view.
    shown = JobMessage(application_id=77, interaction_token="secret-token-123", message_id=4242)
    assert all(snapshot.message == shown for snapshot in snapshots)
    assert "secret-token-123" not in repr(final) and "secret-token-123" not in str(final.to_json())

    # Moving to a channel message is noted on the live snapshot, without news for the listeners.
    heard = len(env.events)
    await service.set_message(job.id, channel_message_id=5555)
    assert len(env.events) == heard
    live = await service.snapshot(job.id)
    assert live is not None and live.message == replace(shown, channel_message_id=5555)
    row = await service.get_job(job.id)
    assert row is not None and row.channel_message_id == 5555


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


async def _job_with_an_unrecorded_preview(env: Env) -> tuple[str, str]:
    """The state a crash leaves between Meshy's answer and the commit: a request time, no task id; and
    the task Meshy did create for it. Returns the job's id and that task's."""
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
    return job.id, orphan


async def test_a_task_created_but_never_recorded_is_adopted_not_created_again(env: Env) -> None:
    service = env.service()
    job_id, orphan = await _job_with_an_unrecorded_preview(env)

    assert await service.resume_unfinished() == 1
    done = await service.wait(job_id)
    assert done.state is JobState.DONE
    assert done.preview_task_id == orphan
    assert len(env.meshy.create_requests) == 1


async def test_a_task_search_that_fails_is_retried_before_anything_is_created(env: Env) -> None:
    service = env.service(create_backoff_s=0.05)
    job_id, orphan = await _job_with_an_unrecorded_preview(env)
    # One search's worth of failed listings (the client's own retries included), then Meshy answers.
    env.meshy.inject_error(503, count=3, method="GET", path_contains=TASKS_PATH)

    assert await service.resume_unfinished() == 1
    done = await service.wait(job_id)
    assert done.state is JobState.DONE and done.preview_task_id == orphan
    assert len(env.meshy.create_requests) == 1


async def test_a_job_that_cannot_search_for_its_task_fails_rather_than_create_a_second(env: Env) -> None:
    service = env.service(create_backoff_s=0.05)
    job_id, _orphan = await _job_with_an_unrecorded_preview(env)
    env.meshy.inject_error(503, count=100, method="GET", path_contains=TASKS_PATH)

    assert await service.resume_unfinished() == 1
    done = await service.wait(job_id)
    assert done.state is JobState.FAILED and done.error
    assert len(env.meshy.create_requests) == 1  # only the orphan


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


async def test_live_snapshots_reach_subscribers(env: Env) -> None:
    env.meshy.config.preview_s = 0.5
    service = env.service()
    job = await service.submit(request(texture=False))
    seen: list[JobState] = []
    async with service.subscribe(job.id) as queue:
        while not seen or not seen[-1].is_terminal:
            seen.append((await asyncio.wait_for(queue.get(), 10)).state)
    assert seen[-1] is JobState.DONE
