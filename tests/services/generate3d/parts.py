"""Parts the generation service tests share: an environment around the local Meshy double, and requests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.services.generate3d.progress import JobSnapshot
from bot.services.generate3d.prompts.check import PromptChecker
from bot.services.generate3d.prompts.enhancer import PromptEnhancer
from bot.services.generate3d.prompts.keywords import KeywordEnhancer
from bot.services.generate3d.service import (
    GenerationConfig,
    GenerationOptions,
    GenerationRequest,
    GenerationService,
)
from inference.remote.meshy import MeshyClient, RetryPolicy
from storage.blob_stores import LocalBlobStore
from storage.db import Database, default_sqlite_url
from storage.models import JobState
from tests.fakes.databases import empty_all_tables, open_database
from tests.fakes.meshy_api.server import FakeMeshy

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

    def service(
        self, *, api_key: str | None = None, request_timeout_s: float = 10.0, **config: Any
    ) -> GenerationService:
        client = MeshyClient(
            api_key or self.meshy.api_key,
            base_url=self.meshy.base_url,
            timeout=request_timeout_s,
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


@contextlib.asynccontextmanager
async def two_processes_on(postgres_session_url: str, tmp_path: Path) -> AsyncIterator[tuple[Env, Env]]:
    """Two environments on two handles of one emptied PostgreSQL database (two engines, as two processes
    have), sharing one Meshy double and one blob folder; their services are closed on the way out."""
    async with (
        open_database(postgres_session_url, migrated=False) as a,
        open_database(postgres_session_url, migrated=False) as b,
        FakeMeshy() as meshy,
    ):
        await empty_all_tables(a)
        blobs = LocalBlobStore(tmp_path / "blobs")
        envs = (Env(meshy, a, blobs, tmp_path), Env(meshy, b, blobs, tmp_path))
        try:
            yield envs
        finally:
            for env in envs:
                await asyncio.gather(*(service.close() for service in env.services))


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
