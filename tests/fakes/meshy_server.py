"""A local Meshy-compatible server for tests and benchmarks (aiohttp, 127.0.0.1, random port).

It follows ``docs/MESHY_API.md``: Bearer auth (plus the test-mode key), text-to-3D preview/refine and
image-to-3D creation with Meshy's validation, GET/list/DELETE, the SSE progress stream with keep-alive
re-sends and ``event: error``, balance and credits, and signed asset URLs served by the double itself.

Task state is computed from elapsed time on every read, so no background work runs: a task is PENDING
for ``pending_s``, IN_PROGRESS for ``preview_s``/``refine_s`` with rising progress, then SUCCEEDED (or
FAILED when a failure was scheduled). Knobs on the instance inject what live Meshy does now and then:
5xx, 429 rate limits, queue limits, 402, streams that break, failed tasks and drifting JSON shapes.
Every request is recorded so tests can count calls.

    async with FakeMeshy() as meshy:
        client = MeshyClient(meshy.api_key, base_url=meshy.base_url)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import secrets
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.fakes.meshes import MeshAssets, content_type, preview_assets, refine_assets

TEST_MODE_KEY = "msy_dummy_api_key_for_test_mode_12345678"
DEFAULT_KEY = "msy_lumi_fake_key_0001"
SAMPLE_PREVIEW_ID = "018a210d-8ba4-705c-b111-1f1776f7f578"
SAMPLE_REFINE_ID = "018a210e-2f3c-7a11-9c42-6d2a1b9e0c35"
SAMPLE_IMAGE_ID = "018a210f-5d6e-7b22-8d53-7e3b2c0f1d46"

BUSY_MESSAGE = "The server is busy. Please try again later."
INTERNAL_MESSAGE = "Internal server error."

TEXT_TO_3D = "/openapi/v2/text-to-3d"
IMAGE_TO_3D = "/openapi/v1/image-to-3d"
BALANCE = "/openapi/v1/balance"

AI_MODELS = {"meshy-4", "meshy-5", "meshy-6", "latest"}
FORMATS = ("glb", "obj", "fbx", "stl", "usdz", "3mf")
DEFAULT_FORMATS = ("glb", "fbx", "obj", "usdz")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"message": message}, status=status, headers=headers)


def _api_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() if auth.startswith("Bearer ") else None


async def _json_body(request: web.Request) -> Any:
    """The decoded JSON body, the raw text when it is not JSON, or None (aiohttp caches the bytes)."""
    if not request.body_exists:
        return None
    raw = await request.read()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", errors="replace")


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


@dataclass
class InjectedError:
    status: int
    remaining: int
    message: str
    method: str | None = None
    path_contains: str | None = None
    retry_after: float | None = None
    raw_body: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path_contains is None or self.path_contains in path


@dataclass
class _StreamBreak:
    remaining: int
    after_events: int
    mode: str


@dataclass
class _ScheduledFailure:
    remaining: int
    message: str
    mode: str | None
    after_fraction: float


@dataclass
class FakeTask:
    id: str
    api_key: str
    api: str
    type: str
    prompt: str
    texture_prompt: str
    formats: tuple[str, ...]
    enable_pbr: bool
    cost: int
    created_mono: float
    created_ms: int
    pending_s: float
    run_s: float
    preceding_at_creation: int
    seed: int
    request: dict[str, Any]
    fail_message: str | None = None
    fail_after_fraction: float = 0.5
    canceled_at: float | None = None
    refunded: bool = False
    frozen_state: tuple[str, int] | None = None

    @property
    def assets(self) -> MeshAssets:
        return refine_assets() if self.type in ("text-to-3d-refine", "image-to-3d") else preview_assets()


@dataclass(frozen=True)
class _State:
    status: str
    progress: int
    preceding_tasks: int
    started_ms: int
    finished_ms: int

    @property
    def terminal(self) -> bool:
        return self.status in ("SUCCEEDED", "FAILED", "CANCELED")


class FakeMeshy:
    def __init__(
        self,
        *,
        api_keys: tuple[str, ...] = (DEFAULT_KEY,),
        config: FakeMeshyConfig | None = None,
        credits: int = 10_000,
    ) -> None:
        self.api_keys = set(api_keys) | {TEST_MODE_KEY}
        self.api_key = api_keys[0] if api_keys else TEST_MODE_KEY
        self.config = config or FakeMeshyConfig()
        self.credits = credits
        self.tasks: dict[str, FakeTask] = {}
        self.requests: list[RecordedRequest] = []
        self._asset_owner: dict[str, FakeTask] = {}
        self._errors: list[InjectedError] = []
        self._stream_breaks: list[_StreamBreak] = []
        self._failures: list[_ScheduledFailure] = []
        self._recent: dict[str, deque[float]] = {}
        self._secret = secrets.token_bytes(16)
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.open_streams = 0
        self.stream_opened = asyncio.Event()

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

    # ----------------------------------------------------------------------------------------- knobs

    def inject_error(
        self,
        status: int,
        *,
        count: int = 1,
        method: str | None = None,
        path_contains: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        raw_body: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` instead of serving them.

        ``raw_body`` sends a non-JSON body (e.g. a proxy's HTML 502 page) instead of ``{"message": ...}``.
        """
        defaults = {
            402: "Insufficient credits.",
            403: "Forbidden.",
            429: "RateLimitExceeded: too many requests, slow down.",
            500: INTERNAL_MESSAGE,
            502: "Bad gateway.",
            503: "Service unavailable.",
        }
        self._errors.append(
            InjectedError(
                status=status,
                remaining=count,
                message=message or defaults.get(status, f"Injected error {status}."),
                method=method,
                path_contains=path_contains,
                retry_after=retry_after,
                raw_body=raw_body,
            )
        )

    def rate_limit_next(
        self, count: int = 1, *, retry_after: float = 0.05, method: str | None = None
    ) -> None:
        self.inject_error(429, count=count, method=method, retry_after=retry_after)

    def queue_full_next(self, count: int = 1, *, reason: str = "NoMoreConcurrentTasks") -> None:
        self.inject_error(
            429, count=count, method="POST", message=f"{reason}: the task queue of this account is full."
        )

    def break_streams(self, count: int = 1, *, after_events: int = 1, mode: str = "reset") -> None:
        """Cut the next ``count`` streams after ``after_events`` events.

        ``mode="reset"`` drops the TCP connection mid-body; ``mode="eof"`` ends the body cleanly but
        without a terminal status, as a proxy with a short idle timeout does.
        """
        if mode not in ("reset", "eof"):
            raise ValueError("mode must be 'reset' or 'eof'")
        self._stream_breaks.append(_StreamBreak(remaining=count, after_events=after_events, mode=mode))

    def fail_next_tasks(
        self,
        count: int = 1,
        *,
        message: str = BUSY_MESSAGE,
        mode: str | None = None,
        after_fraction: float = 0.5,
    ) -> None:
        """Make the next ``count`` created tasks (of ``mode`` preview/refine, or any) end FAILED."""
        self._failures.append(
            _ScheduledFailure(remaining=count, message=message, mode=mode, after_fraction=after_fraction)
        )

    def advance(self, seconds: float, task_id: str | None = None) -> None:
        """Age one task (or every task) by ``seconds``, for tests that must not depend on timing."""
        for task in self.tasks.values() if task_id is None else [self.tasks[task_id]]:
            task.created_mono -= seconds
            task.created_ms -= int(seconds * 1000)

    def cancel(self, task_id: str) -> None:
        self.tasks[task_id].canceled_at = time.monotonic()

    def state_of(self, task_id: str) -> str:
        return self._state(self.tasks[task_id], time.monotonic()).status

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
        body = await _json_body(request)
        key = _api_key(request)
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
        for error in self._errors:
            if error.remaining > 0 and error.matches(request.method, request.path):
                error.remaining -= 1
                headers = {} if error.retry_after is None else {"Retry-After": f"{error.retry_after:g}"}
                if error.raw_body is not None:
                    return web.Response(
                        status=error.status, text=error.raw_body, content_type="text/html", headers=headers
                    )
                return _error_response(error.status, error.message, headers)
        self._errors = [error for error in self._errors if error.remaining > 0]
        if not request.path.startswith("/assets/"):
            if key is None or key not in self.api_keys:
                return _error_response(401, "Invalid API key.")
            limited = self._rate_limited(key)
            if limited is not None:
                return limited
        if self.config.response_delay_s > 0 and not request.path.endswith("/stream"):
            await asyncio.sleep(self.config.response_delay_s)
        self._refund_failed()
        try:
            return await handler(request)
        except _ApiError as exc:
            return _error_response(exc.status, exc.message, exc.headers)

    def _rate_limited(self, key: str) -> web.Response | None:
        limit = self.config.requests_per_second
        if limit is None or key == TEST_MODE_KEY:
            return None
        now = time.monotonic()
        window = self._recent.setdefault(key, deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= limit:
            retry_after = max(0.01, 1.0 - (now - window[0]))
            return _error_response(
                429, "RateLimitExceeded: too many requests, slow down.", {"Retry-After": f"{retry_after:.3f}"}
            )
        window.append(now)
        return None

    # -------------------------------------------------------------------------------------- state

    def _state(self, task: FakeTask, now: float) -> _State:
        if task.frozen_state is not None:
            status, progress = task.frozen_state
            return _State(status, progress, 0, task.created_ms, task.created_ms)
        elapsed = now - task.created_mono
        started_ms = task.created_ms + int(task.pending_s * 1000)
        finished_ms = started_ms + int(task.run_s * 1000)
        if task.canceled_at is not None and task.canceled_at <= now:
            at_ms = task.created_ms + int((task.canceled_at - task.created_mono) * 1000)
            return _State("CANCELED", 0, 0, min(started_ms, at_ms), at_ms)
        if elapsed < task.pending_s:
            remaining = 1.0 - elapsed / task.pending_s if task.pending_s > 0 else 0.0
            preceding = math.ceil(task.preceding_at_creation * remaining)
            return _State("PENDING", 0, preceding, 0, 0)
        running = elapsed - task.pending_s
        if task.fail_message is not None:
            fail_at = task.run_s * task.fail_after_fraction
            if running >= fail_at:
                progress = int(100 * task.fail_after_fraction)
                return _State("FAILED", progress, 0, started_ms, started_ms + int(fail_at * 1000))
        if running < task.run_s:
            progress = max(1, min(99, int(100 * running / task.run_s))) if task.run_s > 0 else 99
            return _State("IN_PROGRESS", progress, 0, started_ms, 0)
        return _State("SUCCEEDED", 100, 0, started_ms, finished_ms)

    def _refund_failed(self) -> None:
        now = time.monotonic()
        for task in self.tasks.values():
            if task.refunded or task.fail_message is None:
                continue
            if self._state(task, now).status == "FAILED":
                self.credits += task.cost
                task.refunded = True

    def _active(self, key: str, now: float) -> list[_State]:
        states = [self._state(task, now) for task in self.tasks.values() if task.api_key == key]
        return [state for state in states if not state.terminal]

    def _signed(self, task: FakeTask, file_name: str) -> str:
        expires = int(time.time() + self.config.asset_ttl_s)
        path = f"/assets/{task.id}/{file_name}"
        signature = hmac.new(self._secret, f"{path}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]
        return f"{self.base_url}{path}?Expires={expires}&Signature={signature}"

    def _view(self, task: FakeTask, *, full: bool = True) -> dict[str, Any]:
        state = self._state(task, time.monotonic())
        drift = self.config.drift
        if not full:
            short: dict[str, Any] = {"id": task.id, "progress": state.progress, "status": state.status}
            if state.status == "PENDING":
                short["preceding_tasks"] = state.preceding_tasks
            return short
        succeeded = state.status == "SUCCEEDED"
        model_urls: dict[str, str] = {}
        texture_urls: list[dict[str, str]] | None = []
        if succeeded:
            for fmt in task.formats:
                model_urls[fmt] = self._signed(task, f"model.{fmt}")
            if "obj" in task.formats:
                model_urls["mtl"] = self._signed(task, "model.mtl")
            if task.type != "text-to-3d-preview":
                maps = (
                    ("base_color", "metallic", "normal", "roughness") if task.enable_pbr else ("base_color",)
                )
                texture_urls = [{name: self._signed(task, f"texture_{name}.png") for name in maps}]
        elif drift:
            model_urls = {"glb": ""}
        if drift and not texture_urls:
            texture_urls = None if task.type == "text-to-3d-preview" else []
        view: dict[str, Any] = {
            "id": task.id,
            "type": task.type,
            "status": state.status,
            "progress": state.progress,
            "model_urls": model_urls,
            "thumbnail_url": self._signed(task, "preview.png") if succeeded else ("" if not drift else None),
            "video_url": "",
            "texture_urls": texture_urls,
            "prompt": task.prompt,
            "texture_prompt": task.texture_prompt,
            "art_style": "",
            "seed": task.seed,
            "preceding_tasks": state.preceding_tasks,
            "created_at": task.created_ms,
            "started_at": state.started_ms,
            "finished_at": state.finished_ms,
            "task_error": {"message": task.fail_message if state.status == "FAILED" else ""},
            "consumed_credits": task.cost,
        }
        if drift:
            if state.status != "FAILED":
                view["task_error"] = None
            if state.status != "PENDING":
                del view["preceding_tasks"]
            del view["video_url"]
            view.update(
                {
                    "mode": "refine" if task.type.endswith("refine") else "preview",
                    "name": "",
                    "expires_at": task.created_ms + 3 * 24 * 3600 * 1000,
                    "negative_prompt": None,
                    "unknown_future_field": {"nested": [1, 2, 3]},
                }
            )
        return view

    # ------------------------------------------------------------------------------------- creation

    def _sample(self, task_id: str, kind: str, body: dict[str, Any]) -> FakeTask:
        existing = self.tasks.get(task_id)
        if existing is not None:
            return existing
        task = FakeTask(
            id=task_id,
            api_key=TEST_MODE_KEY,
            api=TEXT_TO_3D if kind != "image-to-3d" else IMAGE_TO_3D,
            type=kind,
            prompt="a monster mask",
            texture_prompt="",
            formats=DEFAULT_FORMATS,
            enable_pbr=True,
            cost=0,
            created_mono=time.monotonic(),
            created_ms=1692771650657,
            pending_s=0.0,
            run_s=0.0,
            preceding_at_creation=0,
            seed=1234,
            request=body,
            frozen_state=("SUCCEEDED", 100),
        )
        self.tasks[task_id] = task
        self._asset_owner[task_id] = task
        return task

    def _formats(self, body: dict[str, Any]) -> tuple[str, ...]:
        formats = body.get("target_formats")
        if formats is None:
            return DEFAULT_FORMATS
        if not isinstance(formats, list) or not formats or any(f not in FORMATS for f in formats):
            raise _ApiError(400, f"Invalid target_formats: must be a list of {', '.join(FORMATS)}.")
        return tuple(dict.fromkeys(formats))

    def _validate_preview(self, body: dict[str, Any]) -> None:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _ApiError(400, "Missing required parameter: prompt.")
        if len(prompt) > 600:
            raise _ApiError(400, "Invalid prompt: the prompt must be at most 600 characters.")
        choices = {
            "ai_model": AI_MODELS,
            "model_type": {"standard", "lowpoly"},
            "topology": {"triangle", "quad"},
            "pose_mode": {"a-pose", "t-pose", ""},
            "art_style": {"realistic", "sculpture"},
        }
        for name, allowed in choices.items():
            if name in body and body[name] not in allowed:
                raise _ApiError(400, f"Invalid {name}: {body[name]!r}.")
        polycount = body.get("target_polycount")
        if polycount is not None and (
            not isinstance(polycount, int) or isinstance(polycount, bool) or not 100 <= polycount <= 300_000
        ):
            raise _ApiError(400, "Invalid target_polycount: must be an integer between 100 and 300000.")
        if "should_remesh" in body and not isinstance(body["should_remesh"], bool):
            raise _ApiError(400, "Invalid should_remesh: must be a boolean.")

    def _refine_source(self, body: dict[str, Any], key: str) -> FakeTask:
        preview_id = body.get("preview_task_id")
        if not isinstance(preview_id, str) or not preview_id:
            raise _ApiError(400, "Missing required parameter: preview_task_id.")
        preview = self.tasks.get(preview_id)
        if preview is None or preview.api_key != key or preview.type != "text-to-3d-preview":
            raise _ApiError(404, f"Task not found: {preview_id}.")
        if self._state(preview, time.monotonic()).status != "SUCCEEDED":
            raise _ApiError(400, "The preview task has not SUCCEEDED yet; refine needs a finished preview.")
        texture_prompt = body.get("texture_prompt", "")
        if not isinstance(texture_prompt, str) or len(texture_prompt) > 600:
            raise _ApiError(400, "Invalid texture_prompt: must be a string of at most 600 characters.")
        if "enable_pbr" in body and not isinstance(body["enable_pbr"], bool):
            raise _ApiError(400, "Invalid enable_pbr: must be a boolean.")
        if "ai_model" in body and body["ai_model"] not in AI_MODELS:
            raise _ApiError(400, f"Invalid ai_model: {body['ai_model']!r}.")
        return preview

    def _take_failure(self, mode: str) -> _ScheduledFailure | None:
        for failure in self._failures:
            if failure.remaining > 0 and failure.mode in (None, mode):
                failure.remaining -= 1
                return failure
        return None

    async def _create(self, request: web.Request) -> web.StreamResponse:
        key = _api_key(request) or ""
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise _ApiError(400, "Invalid request body: expected a JSON object.")
        api = IMAGE_TO_3D if request.path.startswith(IMAGE_TO_3D) else TEXT_TO_3D
        if api == IMAGE_TO_3D:
            image_url = body.get("image_url")
            if not isinstance(image_url, str) or not image_url.startswith(("http://", "https://", "data:")):
                raise _ApiError(400, "Missing or invalid parameter: image_url.")
            mode: str = "image"
            kind, cost = "image-to-3d", self.config.preview_cost
            prompt, texture_prompt, duration = "", "", self.config.preview_s + self.config.refine_s
            enable_pbr = bool(body.get("enable_pbr", False))
        else:
            mode = str(body.get("mode"))
            if mode == "preview":
                self._validate_preview(body)
                kind, cost, duration = "text-to-3d-preview", self.config.preview_cost, self.config.preview_s
                prompt, texture_prompt, enable_pbr = body["prompt"], "", False
            elif mode == "refine":
                preview = self._refine_source(body, key)
                kind, cost, duration = "text-to-3d-refine", self.config.refine_cost, self.config.refine_s
                prompt, texture_prompt = preview.prompt, body.get("texture_prompt", "")
                enable_pbr = bool(body.get("enable_pbr", False))
            else:
                raise _ApiError(400, "Invalid mode: must be 'preview' or 'refine'.")
        formats = self._formats(body)
        if key == TEST_MODE_KEY:
            sample_id = {"preview": SAMPLE_PREVIEW_ID, "refine": SAMPLE_REFINE_ID}.get(mode, SAMPLE_IMAGE_ID)
            self._sample(sample_id, kind, body)
            return web.json_response({"result": sample_id}, status=202)
        now = time.monotonic()
        active = self._active(key, now)
        limit = self.config.max_concurrent_tasks
        if limit is not None and len(active) >= limit:
            raise _ApiError(429, "NoMoreConcurrentTasks: the account has reached its concurrent task limit.")
        pending_limit = self.config.max_pending_tasks
        if pending_limit is not None and sum(s.status == "PENDING" for s in active) >= pending_limit:
            raise _ApiError(429, "NoMorePendingTasks: the account has reached its pending task limit.")
        if self.credits < cost:
            raise _ApiError(402, "Insufficient credits: please top up your balance.")
        self.credits -= cost
        failure = self._take_failure("refine" if kind.endswith("refine") else "preview")
        task = FakeTask(
            id=str(uuid.uuid4()),
            api_key=key,
            api=api,
            type=kind,
            prompt=prompt,
            texture_prompt=texture_prompt if isinstance(texture_prompt, str) else "",
            formats=formats,
            enable_pbr=enable_pbr,
            cost=cost,
            created_mono=now,
            created_ms=int(time.time() * 1000),
            pending_s=self.config.pending_s,
            run_s=duration,
            preceding_at_creation=len(active),
            seed=secrets.randbelow(2**31),
            request=body,
            fail_message=failure.message if failure else None,
            fail_after_fraction=failure.after_fraction if failure else 0.5,
        )
        self.tasks[task.id] = task
        self._asset_owner[task.id] = task
        return web.json_response({"result": task.id}, status=202)

    # -------------------------------------------------------------------------------------- reading

    def _owned(self, request: web.Request) -> FakeTask:
        task = self.tasks.get(request.match_info["task_id"])
        api = IMAGE_TO_3D if request.path.startswith(IMAGE_TO_3D) else TEXT_TO_3D
        key = _api_key(request)
        if key == TEST_MODE_KEY and task is None:
            sample_id = SAMPLE_IMAGE_ID if api == IMAGE_TO_3D else SAMPLE_PREVIEW_ID
            kind = "image-to-3d" if api == IMAGE_TO_3D else "text-to-3d-preview"
            task = self._sample(sample_id, kind, {})
        if task is None or task.api_key != key or task.api != api:
            raise _ApiError(404, "Task not found.")
        return task

    async def _get(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._view(self._owned(request)))

    async def _list(self, request: web.Request) -> web.StreamResponse:
        try:
            page_num = int(request.query.get("page_num", "1"))
            page_size = int(request.query.get("page_size", "10"))
        except ValueError:
            raise _ApiError(400, "Invalid page_num or page_size: must be integers.") from None
        sort_by = request.query.get("sort_by", "-created_at")
        if page_num < 1 or not 1 <= page_size <= 50:
            raise _ApiError(400, "Invalid pagination: page_num >= 1 and 1 <= page_size <= 50.")
        if sort_by not in ("+created_at", "-created_at"):
            raise _ApiError(400, "Invalid sort_by: must be +created_at or -created_at.")
        api = IMAGE_TO_3D if request.path.startswith(IMAGE_TO_3D) else TEXT_TO_3D
        key = _api_key(request)
        if key == TEST_MODE_KEY:
            self._sample(SAMPLE_PREVIEW_ID, "text-to-3d-preview", {})
        owned = [task for task in self.tasks.values() if task.api_key == key and task.api == api]
        owned.sort(key=lambda task: (task.created_ms, task.created_mono), reverse=sort_by == "-created_at")
        page = owned[(page_num - 1) * page_size : page_num * page_size]
        return web.json_response([self._view(task) for task in page])

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        task = self._owned(request)
        if _api_key(request) != TEST_MODE_KEY:
            del self.tasks[task.id]
        return web.Response(status=200)

    async def _balance(self, request: web.Request) -> web.StreamResponse:
        if _api_key(request) == TEST_MODE_KEY:
            return web.json_response({"balance": 1000})
        return web.json_response({"balance": self.credits})

    # --------------------------------------------------------------------------------------- stream

    def _take_stream_break(self) -> _StreamBreak | None:
        for cut in self._stream_breaks:
            if cut.remaining > 0:
                cut.remaining -= 1
                return cut
        return None

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        self.open_streams += 1
        self.stream_opened.set()
        try:
            # A client that stops reading once it has what it needs closes the connection mid-stream.
            with contextlib.suppress(ConnectionResetError):
                await self._stream_events(request, response)
        finally:
            self.open_streams -= 1
        return response

    async def _stream_events(self, request: web.Request, response: web.StreamResponse) -> None:
        task_id = request.match_info["task_id"]
        try:
            task = self._owned(request)
        except _ApiError:
            await response.write(b'event: error\ndata: {"status_code": 404, "message": "Task not found"}\n\n')
            await response.write_eof()
            return
        cut = self._take_stream_break()
        sent = 0
        last_view: dict[str, Any] | None = None
        last_sent = 0.0
        while True:
            if task_id not in self.tasks:
                await response.write(
                    b'event: error\ndata: {"status_code": 404, "message": "Task not found"}\n\n'
                )
                break
            now = time.monotonic()
            state = self._state(task, now)
            full = not self.config.stream_short_form or (
                state.terminal and not self.config.stream_terminal_short
            )
            view = self._view(task, full=full)
            if view != last_view or now - last_sent >= self.config.keepalive_s:
                await response.write(b"event: message\ndata: " + json.dumps(view).encode() + b"\n\n")
                sent += 1
                last_view, last_sent = view, now
                if cut is not None and sent >= cut.after_events and not state.terminal:
                    if cut.mode == "reset" and request.transport is not None:
                        request.transport.abort()
                        return
                    break
            if state.terminal:
                break
            await asyncio.sleep(self.config.stream_tick_s)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()

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
