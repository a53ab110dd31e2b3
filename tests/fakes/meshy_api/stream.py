"""The fake Meshy's SSE progress stream (``GET .../{task_id}/stream``).

An ``event: message`` carries the task view whenever it changes, and again every ``keepalive_s`` while
it does not; the stream ends after a terminal status. Unknown or deleted tasks get ``event: error``.
Streams cut with ``FakeMeshy.break_streams`` stop mid-way, by connection reset or by a clean EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.meshy_api.requests import ApiError
from tests.fakes.meshy_api.tasks import task_state

if TYPE_CHECKING:
    from tests.fakes.meshy_api.server import FakeMeshy

NOT_FOUND_EVENT = b'event: error\ndata: {"status_code": 404, "message": "Task not found"}\n\n'


async def stream_task(meshy: FakeMeshy, request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    meshy.open_streams += 1
    meshy.stream_opened.set()
    try:
        # A client that stops reading once it has what it needs closes the connection mid-stream.
        with contextlib.suppress(ConnectionResetError):
            await _stream_events(meshy, request, response)
    finally:
        meshy.open_streams -= 1
    return response


async def _stream_events(meshy: FakeMeshy, request: web.Request, response: web.StreamResponse) -> None:
    task_id = request.match_info["task_id"]
    try:
        task = meshy.owned_task(request)
    except ApiError:
        await response.write(NOT_FOUND_EVENT)
        await response.write_eof()
        return
    cut = meshy.take_stream_break()
    sent = 0
    last_view: dict[str, Any] | None = None
    last_sent = 0.0
    while True:
        if task_id not in meshy.tasks:
            await response.write(NOT_FOUND_EVENT)
            break
        now = time.monotonic()
        state = task_state(task, now)
        full = not meshy.config.stream_short_form or (
            state.terminal and not meshy.config.stream_terminal_short
        )
        view = meshy.view(task, full=full)
        if view != last_view or now - last_sent >= meshy.config.keepalive_s:
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
        await asyncio.sleep(meshy.config.stream_tick_s)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
