"""What users and moderators do with generation jobs against the local Meshy double, a real SQLite
database and a real blob store: cancelling, quotas, blocked prompts, refining, regenerating and deleting."""

from __future__ import annotations

import pytest

from bot.services.generate3d.service import PromptRejected, QuotaExceeded
from storage.models import JobState
from storage.repo import guilds as repo_guilds
from tests.services.generate3d.parts import CHANNEL, GUILD, MOD_CHANNEL, Env, request, wait_until


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
