"""Generation jobs with their files in Azure Blob Storage (Azurite), and with a store that does not answer."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.services.generate3d.shapes import STORAGE_FAILURE
from storage.blob_stores.azure import AzureBlobStore
from storage.db import Database, default_sqlite_url
from storage.models import JobState
from storage.repo import assets as repo_assets
from tests.fakes.blob_emulators import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, azurite, free_port
from tests.fakes.meshy_api.server import FakeMeshy
from tests.services.generate3d.parts import Env, request

__all__ = ["azurite"]


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(default_sqlite_url(tmp_path / "db"))
    await db.upgrade()
    try:
        yield db
    finally:
        await db.close()


async def run_env(env: Env) -> None:
    for service in env.services:
        await service.close()
    await env.blobs.close()


async def test_a_job_stores_its_files_in_azure(tmp_path: Path, database: Database, azurite: Azurite) -> None:
    blobs = AzureBlobStore(azurite.connection_string, f"lumi-jobs-{secrets.token_hex(4)}")
    await blobs.create_container()
    async with FakeMeshy() as meshy:
        env = Env(meshy, database, blobs, tmp_path)  # type: ignore[arg-type]
        try:
            service = env.service()
            done = await service.wait((await service.submit(request())).id)
            assert done.state is JobState.DONE, done.error
            result = await service.result(done.id)
            glb = result.model("glb")
            assert glb is not None and done.refine_task_id is not None
            assert await blobs.read(glb.key) == meshy.asset_bytes(done.refine_task_id, "model.glb")
            info = await blobs.stat(glb.key)
            assert info is not None and info.size == glb.size
        finally:
            await run_env(env)


async def test_a_store_that_does_not_answer_fails_the_job_with_a_sentence_and_no_rows(
    tmp_path: Path, database: Database
) -> None:
    dead = AzureBlobStore(
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT};",
        "lumi-jobs",
    )
    async with FakeMeshy() as meshy:
        env = Env(meshy, database, dead, tmp_path)  # type: ignore[arg-type]
        try:
            service = env.service()
            failed = await service.wait((await service.submit(request(texture=False))).id)
            assert failed.state is JobState.FAILED
            assert failed.error == STORAGE_FAILURE
            async with database.session() as session:
                assert await repo_assets.list_job_assets(session=session, job_id=failed.id) == []
        finally:
            await run_env(env)
