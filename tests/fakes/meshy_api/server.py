"""A local Meshy-compatible server for tests and benchmarks (aiohttp, 127.0.0.1, random port).

It follows ``docs/MESHY_API.md``: Bearer auth (plus the test-mode key), text-to-3D preview/refine and
image-to-3D creation with Meshy's validation, GET/list/DELETE, the SSE progress stream, balance and
credits, and signed asset URLs served by the double itself. Every request is recorded so tests can
count calls.

This module holds the server itself: routes, auth, recording, credits and asset hosting. Tasks and their
time-driven states live in ``tasks``, request validation in ``requests``, task creation in
``creation``, the stream in ``stream``, and the failure knobs mixed in here in ``faults``.

    async with FakeMeshy() as meshy:
        client = MeshyClient(meshy.api_key, base_url=meshy.base_url)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.fakes.meshes import content_type
from tests.fakes.meshy_api.creation import create_task
from tests.fakes.meshy_api.faults import MeshyFaults
from tests.fakes.meshy_api.requests import ApiError, api_key, error_response, json_body
from tests.fakes.meshy_api.stream import stream_task
from tests.fakes.meshy_api.tasks import (
    IMAGE_TO_3D,
    SAMPLE_IMAGE_ID,
    SAMPLE_PREVIEW_ID,
    TEST_MODE_KEY,
    TEXT_TO_3D,
    FakeTask,
    sample_task,
    task_state,
    task_view,
)

DEFAULT_KEY = "msy_lumi_fake_key_0001"
BALANCE = "/openapi/v1/balance"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FakeMeshyConfig:
    """Timings, account limits and response shapes; change them on a running double between calls.

    Meshy's real durations are ~60 s and its keep-alive ~10 s; tests use fractions of a second.
    ``stream_short_form`` sends only id/progress/status while running (as Meshy guarantees no more);
    ``stream_terminal_short`` makes even the terminal event short, which forces a client to ``GET``
    the full task. ``drift`` switches to the null/empty/extra-field shapes seen in live responses.
    ``response_delay_s`` slows every non-stream answer (client timeouts).
    """

    pending_s: float = 0.05
    preview_s: float = 0.3
    refine_s: float = 0.3
    keepalive_s: float = 0.1
    stream_tick_s: float = 0.02
    asset_ttl_s: float = 3 * 24 * 3600.0
    max_concurrent_tasks: int | None = None
    max_pending_tasks: int | None = None
    requests_per_second: float | None = None
    preview_cost: int = 20
    refine_cost: int = 10
    drift: bool = False
    stream_short_form: bool = True
    stream_terminal_short: bool = False
    response_delay_s: float = 0.0


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    api_key: str | None
    at: float


class FakeMeshy(MeshyFaults):
    def __init__(
        self,
        *,
        api_keys: tuple[str, ...] = (DEFAULT_KEY,),
        config: FakeMeshyConfig | None = None,
        credits: int = 10_000,
    ) -> None:
        super().__init__()
        self.api_keys = set(api_keys) | {TEST_MODE_KEY}
        self.api_key = api_keys[0] if api_keys else TEST_MODE_KEY
        self.config = config or FakeMeshyConfig()
        self.credits = credits
        self.tasks: dict[str, FakeTask] = {}
        self.requests: list[RecordedRequest] = []
        self._asset_owner: dict[str, FakeTask] = {}
        self._secret = secrets.token_bytes(16)
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.open_streams = 0
        self.stream_opened = asyncio.Event()
        # Tasks of this type created from now on stop at this progress until ``release`` (see ``hold``).
        self.holding: tuple[str, int] | None = None
        self._held_tasks: list[FakeTask] = []

    # ------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeMeshy:
        app = web.Application(middlewares=[self._middleware])
        for api in (TEXT_TO_3D, IMAGE_TO_3D):
            app.router.add_post(api, self._create)
            app.router.add_get(api, self._list)
            app.router.add_get(api + "/{task_id}", self._get)
            app.router.add_delete(api + "/{task_id}", self._delete)
            app.router.add_get(api + "/{task_id}/stream", self._stream)
        app.router.add_get(BALANCE, self._balance)
        app.router.add_get("/assets/{task_id}/{file_name}", self._asset)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeMeshy:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------------------------ task knobs

    def advance(self, seconds: float, task_id: str | None = None) -> None:
        """Age one task (or every task) by ``seconds``, for tests that must not depend on timing."""
        for task in self.tasks.values() if task_id is None else [self.tasks[task_id]]:
            task.created_mono -= seconds
            task.created_ms -= int(seconds * 1000)

    def hold(self, mode: str = "preview", *, at_progress: int = 40) -> None:
        """Stop every ``mode`` task created from now on at ``at_progress`` (IN_PROGRESS) until
        ``release``: a job stays in that stage as long as a test needs, whoever follows it."""
        if mode not in ("preview", "refine"):
            raise ValueError("mode must be 'preview' or 'refine'")
        if not 0 < at_progress < 100:
            raise ValueError("at_progress must be between 1 and 99")
        self.holding = (f"text-to-3d-{mode}", at_progress)

    def held(self, task: FakeTask) -> None:
        """Called as a task is created: freeze it when it is of the type being held."""
        if self.holding is not None and task.type == self.holding[0]:
            task.frozen_state = ("IN_PROGRESS", self.holding[1])
            self._held_tasks.append(task)

    def release(self) -> None:
        """Let the held tasks run on from where they stopped, and hold no new ones."""
        self.holding = None
        now = time.monotonic()
        for task in self._held_tasks:
            assert task.frozen_state is not None
            done = task.frozen_state[1] / 100
            task.frozen_state = None
            task.created_mono = now - task.pending_s - task.run_s * done
        self._held_tasks.clear()

    def cancel(self, task_id: str) -> None:
        self.tasks[task_id].canceled_at = time.monotonic()

    def state_of(self, task_id: str) -> str:
        return task_state(self.tasks[task_id], time.monotonic()).status

    # ------------------------------------------------------------------------------------- recorded

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        return sum(
            1
            for request in self.requests
            if (method is None or request.method == method)
            and (path_contains is None or path_contains in request.path)
        )

    @property
    def create_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path in (TEXT_TO_3D, IMAGE_TO_3D)]

    @property
    def stream_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/stream")]

    # ------------------------------------------------------------------------------------ middleware

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await json_body(request)
        key = api_key(request)
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                json=body,
                api_key=key,
                at=time.monotonic(),
            )
        )
        if self.take_hang(request.method, request.path):
            # Held until the server closes, which cancels this handler.
            await asyncio.Event().wait()
        injected = self.injected_response(request.method, request.path)
        if injected is not None:
            return injected
        if not request.path.startswith("/assets/"):
            if key is None or key not in self.api_keys:
                return error_response(401, "Invalid API key.")
            limited = self.rate_limited(key, self.config.requests_per_second)
            if limited is not None:
                return limited
        if self.config.response_delay_s > 0 and not request.path.endswith("/stream"):
            await asyncio.sleep(self.config.response_delay_s)
        self._refund_failed()
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.message, exc.headers)

    # ---------------------------------------------------------------------------------- task views

    def _refund_failed(self) -> None:
        now = time.monotonic()
        for task in self.tasks.values():
            if task.refunded or task.fail_message is None:
                continue
            if task_state(task, now).status == "FAILED":
                self.credits += task.cost
                task.refunded = True

    def _signed(self, task: FakeTask, file_name: str) -> str:
        expires = int(time.time() + self.config.asset_ttl_s)
        path = f"/assets/{task.id}/{file_name}"
        signature = hmac.new(self._secret, f"{path}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]
        return f"{self.base_url}{path}?Expires={expires}&Signature={signature}"

    def view(self, task: FakeTask, *, full: bool = True) -> dict[str, Any]:
        """The task as Meshy returns it right now, with asset URLs signed by this server."""
        state = task_state(task, time.monotonic())
        return task_view(task, state, full=full, drift=self.config.drift, sign=self._signed)

    def owned_task(self, request: web.Request) -> FakeTask:
        """The task named in the path, if the caller's key owns it under that API (404 otherwise)."""
        task = self.tasks.get(request.match_info["task_id"])
        api = IMAGE_TO_3D if request.path.startswith(IMAGE_TO_3D) else TEXT_TO_3D
        key = api_key(request)
        if key == TEST_MODE_KEY and task is None:
            sample_id = SAMPLE_IMAGE_ID if api == IMAGE_TO_3D else SAMPLE_PREVIEW_ID
            kind = "image-to-3d" if api == IMAGE_TO_3D else "text-to-3d-preview"
            task = self.add_sample(sample_id, kind, {})
        if task is None or task.api_key != key or task.api != api:
            raise ApiError(404, "Task not found.")
        return task

    # ---------------------------------------------------------------------------------------- tasks

    def add_task(self, task: FakeTask) -> None:
        self.tasks[task.id] = task
        self._asset_owner[task.id] = task

    def add_sample(self, task_id: str, kind: str, body: dict[str, Any]) -> FakeTask:
        """The test-mode sample task ``task_id``, created on first use."""
        existing = self.tasks.get(task_id)
        if existing is not None:
            return existing
        task = sample_task(task_id, kind, body)
        self.add_task(task)
        return task

    # -------------------------------------------------------------------------------------- reading

    async def _create(self, request: web.Request) -> web.StreamResponse:
        return await create_task(self, request)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.view(self.owned_task(request)))

    async def _list(self, request: web.Request) -> web.StreamResponse:
        try:
            page_num = int(request.query.get("page_num", "1"))
            page_size = int(request.query.get("page_size", "10"))
        except ValueError:
            raise ApiError(400, "Invalid page_num or page_size: must be integers.") from None
        sort_by = request.query.get("sort_by", "-created_at")
        if page_num < 1 or not 1 <= page_size <= 50:
            raise ApiError(400, "Invalid pagination: page_num >= 1 and 1 <= page_size <= 50.")
        if sort_by not in ("+created_at", "-created_at"):
            raise ApiError(400, "Invalid sort_by: must be +created_at or -created_at.")
        api = IMAGE_TO_3D if request.path.startswith(IMAGE_TO_3D) else TEXT_TO_3D
        key = api_key(request)
        if key == TEST_MODE_KEY:
            self.add_sample(SAMPLE_PREVIEW_ID, "text-to-3d-preview", {})
        owned = [task for task in self.tasks.values() if task.api_key == key and task.api == api]
        owned.sort(key=lambda task: (task.created_ms, task.created_mono), reverse=sort_by == "-created_at")
        page = owned[(page_num - 1) * page_size : page_num * page_size]
        return web.json_response([self.view(task) for task in page])

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        task = self.owned_task(request)
        if api_key(request) != TEST_MODE_KEY:
            del self.tasks[task.id]
        return web.Response(status=200)

    async def _balance(self, request: web.Request) -> web.StreamResponse:
        if api_key(request) == TEST_MODE_KEY:
            return web.json_response({"balance": 1000})
        return web.json_response({"balance": self.credits})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        return await stream_task(self, request)

    # --------------------------------------------------------------------------------------- assets

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["task_id"]
        file_name = request.match_info["file_name"]
        path = f"/assets/{task_id}/{file_name}"
        try:
            expires = int(request.query.get("Expires", ""))
        except ValueError:
            return web.Response(status=403, text="AccessDenied: missing signature")
        expected = hmac.new(self._secret, f"{path}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(expected, request.query.get("Signature", "")):
            return web.Response(status=403, text="AccessDenied: bad signature")
        if expires < time.time():
            return web.Response(status=403, text="AccessDenied: Request has expired")
        task = self._asset_owner.get(task_id)
        data = task.assets.files.get(file_name) if task is not None else None
        if data is None:
            return web.Response(status=404, text="NoSuchKey")
        return web.Response(body=data, content_type=content_type(file_name))

    def asset_bytes(self, task_id: str, file_name: str) -> bytes:
        """The exact bytes the double serves for a task's file (``model.glb``, ``preview.png``...)."""
        return self._asset_owner[task_id].assets.files[file_name]
