"""Faults answered with a sentence, not a 500 and a traceback: bad tokens, a broken database."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from bot.runtime import Runtime
from bot.web.app import WebServer
from storage.repo import assets as repo_assets
from tests.conftest import make_settings
from tests.fakes.databases import drop_postgres_database, temporary_postgres_database


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [record for record in caplog.records if record.exc_info], caplog.text
    assert "Traceback" not in caplog.text


async def test_bad_tokens_answer_without_a_traceback(
    runtime: Runtime, server: WebServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with aiohttp.ClientSession() as http:
        # Genuine signatures over keys the blob store refuses.
        for key in ("../etc/passwd", "jobs/" + "x" * 600, ".meta/jobs/abc.json"):
            async with http.get(f"{server.url}/files/{runtime.links.sign(key)}") as response:
                assert response.status == 404, key
        # Longer than any token Lumi issues, yet within what the HTTP parser accepts.
        async with http.get(f"{server.url}/files/{'A' * 6000}.{'B' * 43}") as response:
            assert response.status == 404
        # 100 kB: refused by the HTTP parser itself, logged as one line.
        for _ in range(3):
            async with http.get(f"{server.url}/files/{'A' * 100_000}.{'B' * 43}") as response:
                assert response.status == 400
    _no_tracebacks(caplog)
    assert caplog.text.count("refused a malformed request from 127.0.0.1 (400 LineTooLong)") == 3


async def test_a_dropped_table_answers_503_and_healthz_names_it(
    runtime: Runtime, server: WebServer, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = secrets.token_hex(16)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/jobs/{job_id}") as response:
            assert response.status == 404
        async with runtime.database.engine.begin() as connection:
            await connection.execute(sa.text("DROP TABLE generation_job"))
        for path in (f"/jobs/{job_id}", f"/view/{job_id}", f"/jobs/{job_id}/events"):
            async with http.get(f"{server.url}{path}") as response:
                assert response.status == 503, path
                assert response.headers["Retry-After"] == "30"
                assert "database is not answering" in await response.text()
        async with http.get(f"{server.url}/healthz") as response:
            assert response.status == 503
            body = await response.json()
    assert body["status"] == "degraded" and body["database"]["ok"] is False
    assert "generation_job table cannot be read" in body["database"]["problem"]
    _no_tracebacks(caplog)
    assert "the database failed: no such table: generation_job" in caplog.text


@pytest.mark.postgres
async def test_a_dropped_postgres_database_answers_503(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with temporary_postgres_database() as url:
        runtime = await Runtime.open(make_settings(tmp_path, database_url=url))
        server = WebServer(runtime)
        await server.start()
        try:
            info = await runtime.blobs.put("jobs/abc/a.obj", b"v 0 0 0\n", "model/obj")
            async with runtime.database.session() as session:
                await repo_assets.add_asset(
                    session=session,
                    key=info.key,
                    content_type=info.content_type,
                    size=info.size,
                    sha256=info.sha256,
                    filename="a.obj",
                    owner_kind="job",
                    owner_id="test",
                )
                await session.commit()
            download = runtime.download_url(info.key)
            # Dropped under Lumi's feet (its sessions are terminated first), as an operator's mistake would.
            await drop_postgres_database(url)
            async with aiohttp.ClientSession() as http:
                for target in (f"{server.url}/jobs/{'0' * 32}", download):
                    async with http.get(target) as response:
                        assert response.status == 503, target
                async with http.get(f"{server.url}/healthz") as response:
                    assert response.status == 503
                    assert "does not exist" in (await response.json())["database"]["problem"]
        finally:
            await server.stop()
            await runtime.close()
    _no_tracebacks(caplog)
