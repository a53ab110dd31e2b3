"""Meshy text-to-3D HTTP client on aiohttp.

Retry policy, and why it differs per call:
- reads (GET, list, balance) and DELETE are retried on timeouts, broken connections, 429 rate limits
  (honouring ``Retry-After``) and 5xx, a bounded number of times with jittered exponential backoff;
- task creation is not idempotent on Meshy's side (no idempotency key), so it is retried only when the
  request certainly did not create a task: the connection never opened, a 429 rate limit, or a 5xx
  that Meshy's API itself answered with its JSON error body. A timeout or a proxy's HTML 502 after the
  request was sent may hide a created task, so those surface to the caller instead;
- 429 ``NoMoreConcurrentTasks``/``NoMorePendingTasks`` is never retried here: the account's queue is
  full, and waiting for a slot is the job scheduler's decision, not a request-level retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import inspect
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp

from inference.remote.meshy_models import (
    AI_MODELS,
    MAX_POLYCOUNT,
    MAX_PROMPT_CHARS,
    MESHY_TEST_MODE_KEY,
    MIN_POLYCOUNT,
    MODEL_TYPES,
    POSE_MODES,
    QUEUE_FULL_MARKERS,
    TARGET_FORMATS,
    TOPOLOGIES,
    MeshyAssetUnavailable,
    MeshyAuthError,
    MeshyBadRequest,
    MeshyConnectionError,
    MeshyDeadlineExceeded,
    MeshyDownloadTooLarge,
    MeshyError,
    MeshyForbidden,
    MeshyNoCredits,
    MeshyProtocolError,
    MeshyQueueFull,
    MeshyRateLimited,
    MeshyServerError,
    MeshyStatus,
    MeshyStreamBroken,
    MeshyTask,
    MeshyTaskNotFound,
    MeshyTimeout,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.meshy.ai"
TASKS_PATH = "/openapi/v2/text-to-3d"
BALANCE_PATH = "/openapi/v1/balance"

# Keys of ``MeshyClient.request_counts``: one per method and path shape, ids left out.
KIND_CREATE = f"POST {TASKS_PATH}"
KIND_GET = f"GET {TASKS_PATH}/{{id}}"
KIND_LIST = f"GET {TASKS_PATH}"
KIND_DELETE = f"DELETE {TASKS_PATH}/{{id}}"
KIND_STREAM = f"GET {TASKS_PATH}/{{id}}/stream"
KIND_BALANCE = f"GET {BALANCE_PATH}"
KIND_ASSET = "GET asset"

ProgressCallback = Callable[[MeshyTask], Awaitable[None] | None]


# ------------------------------------------------------------------------------------------------ SSE


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str


class SseParser:
    """Incremental ``text/event-stream`` parser.

    Keeps the parts of the WHATWG rules a JSON-event client needs: ``event:`` and ``data:`` fields,
    multi-line data joined with newlines, ``:`` comment lines (keep-alives) ignored, a blank line ends
    an event. Chunks may split lines anywhere, so bytes wait in a buffer until their newline arrives.
    """

    def __init__(self, *, max_line_bytes: int = 4 * 1024 * 1024) -> None:
        self._buffer = bytearray()
        self._event = ""
        self._data: list[str] = []
        self._max_line_bytes = max_line_bytes

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self._buffer += chunk
        events: list[SseEvent] = []
        while (newline := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            event = self._take_line(line.removesuffix(b"\r").decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        if len(self._buffer) > self._max_line_bytes:
            raise MeshyProtocolError(f"an SSE line exceeded {self._max_line_bytes} bytes")
        return events

    def close(self) -> list[SseEvent]:
        """Flush at end of stream.

        The standard drops an event that lacks its closing blank line, but servers that close the
        connection right after the last ``data:`` line exist, and that last event is usually the
        terminal one, so it is kept.
        """
        events: list[SseEvent] = []
        if self._buffer:
            line = bytes(self._buffer).removesuffix(b"\r")
            self._buffer.clear()
            event = self._take_line(line.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        event = self._take_line("")
        if event is not None:
            events.append(event)
        return events

    def _take_line(self, line: str) -> SseEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data))
            self._event = ""
            self._data = []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


# -------------------------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for request-level retries.

    Backoff is jittered so that many jobs hitting the same 5xx do not come back in lockstep.
    """

    max_retries: int = 3
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int) -> float:
        base = min(self.backoff_max, self.backoff_initial * (2.0**attempt))
        return base * random.uniform(0.75, 1.0)


def _redact_url(url: str) -> str:
    """Signed asset URLs carry credentials in the query string; logs keep only scheme, host and path."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_text(body: bytes) -> tuple[str, bool]:
    """The error message and whether the body was Meshy's own JSON error shape."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return " ".join(text.split())[:300], False
    if isinstance(data, Mapping):
        for key in ("message", "error", "detail"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()[:500], True
            if isinstance(value, Mapping) and isinstance(value.get("message"), str):
                return str(value["message"]).strip()[:500], True
        return text[:300], True
    return text[:300], False


def error_for_status(
    status: int, message: str, *, context: str, retry_after: float | None = None
) -> MeshyError:
    """Map an HTTP status (or an SSE ``event: error`` status) to the matching ``MeshyError``."""
    detail = f"Meshy {context} -> HTTP {status}: {message or '(no message)'}"
    if status in (400, 422):
        return MeshyBadRequest(detail, message=message or "invalid request", status=status)
    if status == 401:
        return MeshyAuthError(detail, status=status)
    if status == 402:
        return MeshyNoCredits(detail, status=status)
    if status == 403:
        return MeshyForbidden(detail, status=status)
    if status == 404:
        return MeshyTaskNotFound(detail, status=status)
    if status == 429:
        for marker in QUEUE_FULL_MARKERS:
            if marker.lower() in message.lower():
                return MeshyQueueFull(detail, reason=marker, status=status)
        return MeshyRateLimited(detail, retry_after=retry_after, status=status)
    if status >= 500:
        return MeshyServerError(detail, status=status)
    return MeshyError(detail, status=status)


def _decode_json(body: bytes, *, context: str) -> object:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError as exc:
        raise MeshyProtocolError(f"Meshy {context}: response is not JSON: {body[:200]!r}") from exc


def _check_prompt(name: str, text: str, *, required: bool) -> None:
    if required and not text.strip():
        raise MeshyBadRequest(f"{name} is empty", message=f"the {name} is empty.", status=None)
    if len(text) > MAX_PROMPT_CHARS:
        raise MeshyBadRequest(
            f"{name} has {len(text)} characters (limit {MAX_PROMPT_CHARS})",
            message=f"the {name} has {len(text)} characters; Meshy takes at most {MAX_PROMPT_CHARS}.",
            status=None,
        )


def _check_choice(name: str, value: str | None, allowed: frozenset[str]) -> None:
    if value is not None and value not in allowed:
        choices = ", ".join(sorted(repr(choice) for choice in allowed))
        raise MeshyBadRequest(
            f"{name}={value!r} not in {choices}", message=f"{name} must be one of {choices}.", status=None
        )


def _check_formats(formats: Sequence[str] | None) -> list[str] | None:
    if formats is None:
        return None
    unknown = [fmt for fmt in formats if fmt not in TARGET_FORMATS]
    if unknown or not formats:
        allowed = ", ".join(sorted(TARGET_FORMATS))
        raise MeshyBadRequest(
            f"target_formats={list(formats)!r}",
            message=f"target formats must be a non-empty list of: {allowed}.",
            status=None,
        )
    return list(dict.fromkeys(formats))


def _result_id(data: object, *, context: str) -> str:
    if isinstance(data, Mapping):
        result = data.get("result")
        if isinstance(result, str) and result:
            return result
    raise MeshyProtocolError(f"Meshy {context}: no task id in response {str(data)[:200]}")


def _task_path(task_id: str) -> str:
    if not task_id or not task_id.strip():
        raise MeshyBadRequest("empty task id", message="the task id is empty.", status=None)
    return f"{TASKS_PATH}/{quote(task_id, safe='')}"


# --------------------------------------------------------------------------------------------- client


class MeshyClient:
    """Async client for Meshy's text-to-3D API.

    Pass ``session`` to share an aiohttp session (the caller then closes it); otherwise the client
    opens its own on first use and ``close()`` (or ``async with``) releases it. Every followed task
    holds one streaming connection for its whole life, so the own session allows ``max_connections``
    (aiohttp's default of 100 would make the 101st concurrent job wait for a free slot).
    ``request_counts`` counts every HTTP request sent, retries included, keyed by ``KIND_*``.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
        stream_idle_timeout: float = 45.0,
        download_timeout: float = 300.0,
        retry: RetryPolicy | None = None,
        user_agent: str = "lumi-bot (+meshy client)",
        max_connections: int = 512,
    ) -> None:
        if not api_key:
            raise ValueError("a Meshy API key is required (the test-mode key works for trials)")
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self._timeout_s = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        # Meshy re-sends the task about every 10 s, so silence well beyond that means a dead stream.
        self._stream_idle_timeout = stream_idle_timeout
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout, sock_read=stream_idle_timeout
        )
        self._download_timeout = aiohttp.ClientTimeout(total=download_timeout, sock_read=timeout)
        self.retry = retry or RetryPolicy()
        self._user_agent = user_agent
        self._max_connections = max_connections
        self.request_counts: Counter[str] = Counter()

    # -- lifecycle

    @property
    def is_test_mode(self) -> bool:
        return self._api_key == MESHY_TEST_MODE_KEY

    @property
    def total_requests(self) -> int:
        return sum(self.request_counts.values())

    async def __aenter__(self) -> MeshyClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns_session and self._session.closed):
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._max_connections))
            self._owns_session = True
        return self._session

    def _headers(self, accept: str = "application/json") -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": accept,
            "User-Agent": self._user_agent,
        }

    # -- one JSON request with retries

    async def _request_json(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        body: Mapping[str, object] | None = None,
        params: Mapping[str, str] | None = None,
        creates_task: bool = False,
    ) -> object:
        context = f"{method} {path}"
        attempt = 0
        while True:
            self.request_counts[kind] += 1
            error: MeshyError
            retry_safe = True
            try:
                async with self._http().request(
                    method,
                    self.base_url + path,
                    json=body,
                    params=params,
                    headers=self._headers(),
                    timeout=self._timeout,
                ) as response:
                    payload = await response.read()
                    if response.status < 300:
                        return _decode_json(payload, context=context)
                    message, from_api = _error_text(payload)
                    error = error_for_status(
                        response.status,
                        message,
                        context=context,
                        retry_after=_parse_retry_after(response.headers.get("Retry-After")),
                    )
                    if creates_task and response.status >= 500 and not from_api:
                        retry_safe = False
            except aiohttp.ClientConnectorError as exc:
                # The TCP/TLS connection never opened, so nothing reached Meshy: safe to resend.
                error = MeshyConnectionError(f"Meshy {context}: cannot connect: {exc}")
            except TimeoutError:
                error = MeshyTimeout(f"Meshy {context}: no answer within {self._timeout_s:g} s")
                retry_safe = not creates_task
            except aiohttp.ClientError as exc:
                error = MeshyConnectionError(f"Meshy {context}: {type(exc).__name__}: {exc}")
                retry_safe = not creates_task
            delay = self._retry_delay(error, attempt)
            if not retry_safe or delay is None:
                raise error
            attempt += 1
            log.warning("%s; retry %d/%d in %.2f s", error.detail, attempt, self.retry.max_retries, delay)
            await asyncio.sleep(delay)

    def _retry_delay(self, error: MeshyError, attempt: int) -> float | None:
        if not error.retryable or isinstance(error, MeshyQueueFull):
            return None
        if attempt >= self.retry.max_retries:
            return None
        if isinstance(error, MeshyRateLimited) and error.retry_after is not None:
            if error.retry_after > self.retry.max_retry_after:
                return None
            return error.retry_after
        return self.retry.backoff(attempt)

    # -- task creation

    async def create_preview(
        self,
        prompt: str,
        *,
        ai_model: str | None = "latest",
        model_type: str | None = None,
        should_remesh: bool | None = None,
        topology: str | None = None,
        target_polycount: int | None = None,
        pose_mode: str | None = None,
        target_formats: Sequence[str] | None = None,
    ) -> str:
        """Start a geometry (preview) task and return its id. Options left as ``None`` are not sent."""
        _check_prompt("prompt", prompt, required=True)
        _check_choice("ai_model", ai_model, AI_MODELS)
        _check_choice("model_type", model_type, MODEL_TYPES)
        _check_choice("topology", topology, TOPOLOGIES)
        _check_choice("pose_mode", pose_mode, POSE_MODES)
        if target_polycount is not None and not MIN_POLYCOUNT <= target_polycount <= MAX_POLYCOUNT:
            raise MeshyBadRequest(
                f"target_polycount={target_polycount}",
                message=f"the polycount must be between {MIN_POLYCOUNT} and {MAX_POLYCOUNT}.",
                status=None,
            )
        body: dict[str, object] = {"mode": "preview", "prompt": prompt}
        optional: dict[str, object | None] = {
            "ai_model": ai_model,
            "model_type": model_type,
            "should_remesh": should_remesh,
            "topology": topology,
            "target_polycount": target_polycount,
            "pose_mode": pose_mode,
            "target_formats": _check_formats(target_formats),
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        data = await self._request_json("POST", TASKS_PATH, kind=KIND_CREATE, body=body, creates_task=True)
        return _result_id(data, context=f"POST {TASKS_PATH}")

    async def create_refine(
        self,
        preview_task_id: str,
        *,
        enable_pbr: bool | None = None,
        texture_prompt: str | None = None,
        texture_image_url: str | None = None,
        remove_lighting: bool | None = None,
        ai_model: str | None = None,
        target_formats: Sequence[str] | None = None,
    ) -> str:
        """Start a texture (refine) task on a SUCCEEDED preview and return its id."""
        _task_path(preview_task_id)
        if texture_prompt is not None:
            _check_prompt("texture prompt", texture_prompt, required=False)
        _check_choice("ai_model", ai_model, AI_MODELS)
        body: dict[str, object] = {"mode": "refine", "preview_task_id": preview_task_id}
        optional: dict[str, object | None] = {
            "enable_pbr": enable_pbr,
            "texture_prompt": texture_prompt or None,
            "texture_image_url": texture_image_url,
            "remove_lighting": remove_lighting,
            "ai_model": ai_model,
            "target_formats": _check_formats(target_formats),
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        data = await self._request_json("POST", TASKS_PATH, kind=KIND_CREATE, body=body, creates_task=True)
        return _result_id(data, context=f"POST {TASKS_PATH}")

    # -- reading

    async def get_task(self, task_id: str) -> MeshyTask:
        path = _task_path(task_id)
        data = await self._request_json("GET", path, kind=KIND_GET)
        return MeshyTask.from_json(data)

    async def list_tasks(
        self, *, page_num: int = 1, page_size: int = 10, sort_by: str = "-created_at"
    ) -> list[MeshyTask]:
        if page_num < 1 or not 1 <= page_size <= 50:
            raise MeshyBadRequest(
                f"page_num={page_num} page_size={page_size}",
                message="page_num must be at least 1 and page_size between 1 and 50.",
                status=None,
            )
        _check_choice("sort_by", sort_by, frozenset({"+created_at", "-created_at"}))
        params = {"page_num": str(page_num), "page_size": str(page_size), "sort_by": sort_by}
        data = await self._request_json("GET", TASKS_PATH, kind=KIND_LIST, params=params)
        if isinstance(data, Mapping):
            # Accept a wrapped list too: Meshy's shapes drift, and this costs nothing.
            data = data.get("result", data.get("data"))
        if not isinstance(data, list):
            raise MeshyProtocolError(f"Meshy GET {TASKS_PATH}: expected a list, got {str(data)[:200]}")
        tasks: list[MeshyTask] = []
        for item in data:
            try:
                tasks.append(MeshyTask.from_json(item))
            except MeshyProtocolError as exc:
                log.warning("skipping unreadable task in Meshy list: %s", exc.detail)
        return tasks

    async def delete_task(self, task_id: str) -> None:
        await self._request_json("DELETE", _task_path(task_id), kind=KIND_DELETE)

    async def balance(self) -> int:
        data = await self._request_json("GET", BALANCE_PATH, kind=KIND_BALANCE)
        value = data.get("balance") if isinstance(data, Mapping) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MeshyProtocolError(f"Meshy GET {BALANCE_PATH}: no balance in {str(data)[:200]}")
        return int(value)

    # -- progress

    async def stream_task(self, task_id: str) -> AsyncGenerator[MeshyTask, None]:
        """Yield the task from Meshy's SSE stream, keep-alive re-sends included, until it is terminal.

        Raises ``MeshyStreamBroken`` when the stream ends, stalls or drops before a terminal status, and
        the mapped ``MeshyError`` for an HTTP error or an ``event: error`` payload. Not retried: the
        caller (``follow_task``) decides between reopening and polling.
        """
        path = _task_path(task_id) + "/stream"
        context = f"GET {path}"
        self.request_counts[KIND_STREAM] += 1
        try:
            async with self._http().get(
                self.base_url + path,
                headers=self._headers(accept="text/event-stream"),
                timeout=self._stream_timeout,
            ) as response:
                if response.status >= 300:
                    message, _ = _error_text(await response.read())
                    raise error_for_status(
                        response.status,
                        message,
                        context=context,
                        retry_after=_parse_retry_after(response.headers.get("Retry-After")),
                    )
                if "text/event-stream" not in response.headers.get("Content-Type", ""):
                    # A proxy or an older API version may answer plain task JSON; use it, not fail.
                    snapshot = MeshyTask.from_json(_decode_json(await response.read(), context=context))
                    yield snapshot
                    if snapshot.is_terminal:
                        return
                    raise MeshyStreamBroken(f"Meshy {context}: answered JSON instead of an event stream")
                parser = SseParser()
                async for chunk in response.content.iter_any():
                    for event in parser.feed(chunk):
                        task = self._task_from_event(task_id, event, context=context)
                        if task is None:
                            continue
                        yield task
                        if task.is_terminal:
                            return
                for event in parser.close():
                    task = self._task_from_event(task_id, event, context=context)
                    if task is not None:
                        yield task
                        if task.is_terminal:
                            return
        except TimeoutError as exc:
            raise MeshyStreamBroken(f"Meshy {context}: no event for {self._stream_idle_timeout:g} s") from exc
        except aiohttp.ClientError as exc:
            raise MeshyStreamBroken(f"Meshy {context}: {type(exc).__name__}: {exc}") from exc
        raise MeshyStreamBroken(f"Meshy {context}: stream ended before the task finished")

    @staticmethod
    def _task_from_event(task_id: str, event: SseEvent, *, context: str) -> MeshyTask | None:
        try:
            data: Any = json.loads(event.data)
        except ValueError:
            if event.event == "error":
                raise MeshyStreamBroken(f"Meshy {context}: event: error {event.data[:200]!r}") from None
            log.debug("ignoring non-JSON SSE event %r on %s", event.event, context)
            return None
        if event.event == "error":
            status = data.get("status_code") if isinstance(data, Mapping) else None
            message, _ = _error_text(event.data.encode())
            if isinstance(status, int) and not isinstance(status, bool):
                raise error_for_status(status, message, context=f"{context} (event: error)")
            raise MeshyStreamBroken(f"Meshy {context}: event: error {message}")
        if not isinstance(data, Mapping) or "status" not in data:
            return None
        if not data.get("id"):
            data = {**data, "id": task_id}
        return MeshyTask.from_json(data)

    async def follow_task(
        self,
        task_id: str,
        *,
        on_update: ProgressCallback | None = None,
        poll_initial: float = 2.0,
        poll_max: float = 30.0,
        deadline: float = 3600.0,
        use_stream: bool = True,
    ) -> MeshyTask:
        """Wait for a task to end and return its terminal state (SUCCEEDED, FAILED or CANCELED).

        Follows the SSE stream; when it breaks, stalls or is refused, polls ``GET`` with exponential
        backoff from ``poll_initial`` to ``poll_max`` seconds. ``on_update`` runs (awaited when it is a
        coroutine) whenever status, progress or queue position changes; keep-alive re-sends do not call
        it. A FAILED task is returned, not raised: call ``task.raise_for_failure()`` to turn it into
        ``MeshyTaskFailed``. Raises ``MeshyDeadlineExceeded`` after ``deadline`` seconds, and fatal
        errors (bad key, unknown task) at once.
        """
        ends_at = time.monotonic() + deadline
        last_key: tuple[object, ...] | None = None

        async def report(task: MeshyTask) -> None:
            nonlocal last_key
            if task.progress_key() == last_key:
                return
            last_key = task.progress_key()
            if on_update is not None:
                result = on_update(task)
                if inspect.isawaitable(result):
                    await result

        def past_deadline() -> MeshyDeadlineExceeded:
            return MeshyDeadlineExceeded(f"Meshy task {task_id} not finished after {deadline:g} s")

        if use_stream:
            try:
                async with (
                    asyncio.timeout(deadline),
                    contextlib.aclosing(self.stream_task(task_id)) as events,
                ):
                    async for task in events:
                        await report(task)
                        if task.is_terminal:
                            return await self._complete(task)
            except TimeoutError as exc:
                raise past_deadline() from exc
            except (MeshyAuthError, MeshyNoCredits):
                raise
            except MeshyError as exc:
                log.warning("Meshy stream for %s unusable (%s); polling instead", task_id, exc.detail)

        delay = poll_initial
        while True:
            remaining = ends_at - time.monotonic()
            if remaining <= 0:
                raise past_deadline()
            try:
                async with asyncio.timeout(remaining):
                    task = await self.get_task(task_id)
            except TimeoutError as exc:
                raise past_deadline() from exc
            except MeshyError as exc:
                if not exc.retryable:
                    raise
                log.warning("polling Meshy task %s failed (%s); will poll again", task_id, exc.detail)
            else:
                await report(task)
                if task.is_terminal:
                    return task
            await asyncio.sleep(max(0.0, min(delay, ends_at - time.monotonic())))
            delay = min(delay * 2, poll_max)

    async def _complete(self, task: MeshyTask) -> MeshyTask:
        """A stream's last event may be the short form; fetch the full task when its payload is missing."""
        missing_urls = task.succeeded and not task.model_urls
        missing_reason = task.status is MeshyStatus.FAILED and not task.error_message
        if missing_urls or missing_reason:
            return await self.get_task(task.id)
        return task

    # -- assets

    async def iter_download(
        self, url: str, *, max_bytes: int, chunk_size: int = 64 * 1024
    ) -> AsyncGenerator[bytes, None]:
        """Stream an asset URL in chunks, stopping with ``MeshyDownloadTooLarge`` past ``max_bytes``.

        Asset URLs are pre-signed, so the API key is never sent with them (they may point at another
        host). Not retried, because chunks may already have been consumed; ``download`` retries.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise MeshyAssetUnavailable(f"not an http(s) asset URL: {_redact_url(url)!r}")
        safe_url = _redact_url(url)
        self.request_counts[KIND_ASSET] += 1
        try:
            async with self._http().get(
                url, timeout=self._download_timeout, headers={"User-Agent": self._user_agent}
            ) as response:
                if response.status >= 500:
                    raise MeshyServerError(
                        f"GET {safe_url} -> HTTP {response.status}", status=response.status
                    )
                if response.status >= 300:
                    raise MeshyAssetUnavailable(
                        f"GET {safe_url} -> HTTP {response.status}", status=response.status
                    )
                if response.content_length is not None and response.content_length > max_bytes:
                    raise MeshyDownloadTooLarge(
                        f"GET {safe_url}: {response.content_length} bytes > limit {max_bytes}"
                    )
                received = 0
                async for chunk in response.content.iter_chunked(chunk_size):
                    received += len(chunk)
                    if received > max_bytes:
                        raise MeshyDownloadTooLarge(f"GET {safe_url}: more than {max_bytes} bytes")
                    yield chunk
        except TimeoutError as exc:
            raise MeshyTimeout(f"GET {safe_url}: download timed out") from exc
        except aiohttp.ClientError as exc:
            raise MeshyConnectionError(f"GET {safe_url}: {type(exc).__name__}: {exc}") from exc

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        """Fetch a whole asset into memory, retrying transient failures like other reads."""
        attempt = 0
        while True:
            buffer = bytearray()
            try:
                async with contextlib.aclosing(self.iter_download(url, max_bytes=max_bytes)) as chunks:
                    async for chunk in chunks:
                        buffer += chunk
                return bytes(buffer)
            except MeshyError as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    raise
                attempt += 1
                log.warning("%s; retry %d/%d in %.2f s", exc.detail, attempt, self.retry.max_retries, delay)
                await asyncio.sleep(delay)

    async def download_to_file(self, url: str, destination: Path, *, max_bytes: int) -> int:
        """Stream an asset to ``destination`` (written off the event loop); returns the byte count.

        Writes to a temporary name and renames at the end, so a failed download leaves no partial file.
        """
        partial = destination.with_name(destination.name + ".part")
        handle = await asyncio.to_thread(partial.open, "wb")
        written = 0
        try:
            async with contextlib.aclosing(self.iter_download(url, max_bytes=max_bytes)) as chunks:
                async for chunk in chunks:
                    await asyncio.to_thread(handle.write, chunk)
                    written += len(chunk)
            await asyncio.to_thread(handle.close)
            await asyncio.to_thread(os.replace, partial, destination)
        except BaseException:
            await asyncio.to_thread(handle.close)
            await asyncio.to_thread(partial.unlink, True)
            raise
        return written
