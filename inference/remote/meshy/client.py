"""Meshy text-to-3D API client: task creation, reads, and following a task to its end.

A task is followed over Meshy's SSE progress stream; when the stream breaks, stalls or is refused, the
client falls back to polling. The HTTP session, retries and asset downloads live in ``MeshyTransport``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence

import aiohttp

from inference.remote.meshy.protocol import (
    BALANCE_PATH,
    KIND_BALANCE,
    KIND_CREATE,
    KIND_DELETE,
    KIND_GET,
    KIND_LIST,
    KIND_STREAM,
    TASKS_PATH,
    check_choice,
    check_formats,
    check_prompt,
    decode_json,
    error_for_status,
    error_text,
    parse_retry_after,
    result_id,
    task_path,
)
from inference.remote.meshy.shapes import (
    AI_MODELS,
    MAX_POLYCOUNT,
    MIN_POLYCOUNT,
    MODEL_TYPES,
    POSE_MODES,
    TOPOLOGIES,
    MeshyAuthError,
    MeshyBadRequest,
    MeshyDeadlineExceeded,
    MeshyError,
    MeshyNoCredits,
    MeshyProtocolError,
    MeshyStatus,
    MeshyStreamBroken,
    MeshyTask,
)
from inference.remote.meshy.sse import SseParser, task_from_event
from inference.remote.meshy.transport import MeshyTransport, read_capped

log = logging.getLogger(__name__)

ProgressCallback = Callable[[MeshyTask], Awaitable[None] | None]


class MeshyClient(MeshyTransport):
    """Async client for Meshy's text-to-3D API.

    Pass ``session`` to share an aiohttp session (the caller then closes it); otherwise the client
    opens its own on first use and ``close()`` (or ``async with``) releases it. Every followed task
    holds one streaming connection for its whole life, so the own session allows ``max_connections``
    (aiohttp's default of 100 would make the 101st concurrent job wait for a free slot).
    ``request_counts`` counts every HTTP request sent, retries included, keyed by ``KIND_*``.
    The constructor, session handling, retries and asset downloads come from ``MeshyTransport``.
    """

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
        check_prompt("prompt", prompt, required=True)
        check_choice("ai_model", ai_model, AI_MODELS)
        check_choice("model_type", model_type, MODEL_TYPES)
        check_choice("topology", topology, TOPOLOGIES)
        check_choice("pose_mode", pose_mode, POSE_MODES)
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
            "target_formats": check_formats(target_formats),
        }
        return await self._create_task(body, optional)

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
        task_path(preview_task_id)
        if texture_prompt is not None:
            check_prompt("texture prompt", texture_prompt, required=False)
        check_choice("ai_model", ai_model, AI_MODELS)
        body: dict[str, object] = {"mode": "refine", "preview_task_id": preview_task_id}
        optional: dict[str, object | None] = {
            "enable_pbr": enable_pbr,
            "texture_prompt": texture_prompt or None,
            "texture_image_url": texture_image_url,
            "remove_lighting": remove_lighting,
            "ai_model": ai_model,
            "target_formats": check_formats(target_formats),
        }
        return await self._create_task(body, optional)

    async def _create_task(self, body: dict[str, object], optional: dict[str, object | None]) -> str:
        """POST a task of ``body`` and those ``optional`` fields that are set; the new task's id."""
        body = {**body, **{key: value for key, value in optional.items() if value is not None}}
        data = await self._request_json("POST", TASKS_PATH, kind=KIND_CREATE, body=body, creates_task=True)
        return result_id(data, context=f"POST {TASKS_PATH}")

    # -- reading

    async def get_task(self, task_id: str) -> MeshyTask:
        path = task_path(task_id)
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
        check_choice("sort_by", sort_by, frozenset({"+created_at", "-created_at"}))
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
        await self._request_json("DELETE", task_path(task_id), kind=KIND_DELETE)

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
        path = task_path(task_id) + "/stream"
        context = f"GET {path}"
        self.request_counts[KIND_STREAM] += 1
        try:
            async with self._http().get(
                self.base_url + path,
                headers=self._headers(accept="text/event-stream"),
                timeout=self._stream_timeout,
            ) as response:
                if response.status >= 300:
                    message, _ = error_text(await read_capped(response, context=context))
                    raise error_for_status(
                        response.status,
                        message,
                        context=context,
                        retry_after=parse_retry_after(response.headers.get("Retry-After")),
                    )
                if "text/event-stream" not in response.headers.get("Content-Type", ""):
                    # A proxy or an older API version may answer plain task JSON; use it, not fail.
                    body = await read_capped(response, context=context)
                    snapshot = MeshyTask.from_json(decode_json(body, context=context))
                    yield snapshot
                    if snapshot.is_terminal:
                        return
                    raise MeshyStreamBroken(f"Meshy {context}: answered JSON instead of an event stream")
                parser = SseParser()
                async for chunk in response.content.iter_any():
                    for event in parser.feed(chunk):
                        task = task_from_event(task_id, event, context=context)
                        if task is None:
                            continue
                        yield task
                        if task.is_terminal:
                            return
                for event in parser.close():
                    task = task_from_event(task_id, event, context=context)
                    if task is not None:
                        yield task
                        if task.is_terminal:
                            return
        except TimeoutError as exc:
            raise MeshyStreamBroken(f"Meshy {context}: no event for {self._stream_idle_timeout:g} s") from exc
        except aiohttp.ClientError as exc:
            raise MeshyStreamBroken(f"Meshy {context}: {type(exc).__name__}: {exc}") from exc
        raise MeshyStreamBroken(f"Meshy {context}: stream ended before the task finished")

    async def follow_task(
        self,
        task_id: str,
        *,
        on_update: ProgressCallback | None = None,
        poll_initial: float = 2.0,
        poll_max: float = 30.0,
        deadline: float = 3600.0,
        use_stream: bool = True,
        before_request: Callable[[], Awaitable[None]] | None = None,
    ) -> MeshyTask:
        """Wait for a task to end and return its terminal state (SUCCEEDED, FAILED or CANCELED).

        Follows the SSE stream; when it breaks, stalls or is refused, polls ``GET`` with exponential
        backoff from ``poll_initial`` to ``poll_max`` seconds. ``on_update`` runs (awaited when it is a
        coroutine) whenever status, progress or queue position changes; keep-alive re-sends do not call
        it. A FAILED task is returned, not raised: call ``task.raise_for_failure()`` to turn it into
        ``MeshyTaskFailed``. Raises ``MeshyDeadlineExceeded`` after ``deadline`` seconds, and fatal
        errors (bad key, unknown task) at once. ``before_request`` is awaited before every request this
        sends (the stream, each poll); whatever it raises ends the wait without that request.
        """

        async def ask() -> None:
            if before_request is not None:
                await before_request()

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
            await ask()
            try:
                async with (
                    asyncio.timeout(deadline),
                    contextlib.aclosing(self.stream_task(task_id)) as events,
                ):
                    async for task in events:
                        await report(task)
                        if task.is_terminal:
                            await ask()
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
            await ask()
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
