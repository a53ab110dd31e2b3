"""Meshy's progress stream: an incremental ``text/event-stream`` parser and the event-to-task mapping."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inference.remote.meshy.protocol import error_for_status, error_text
from inference.remote.meshy.shapes import MeshyProtocolError, MeshyStreamBroken, MeshyTask

log = logging.getLogger(__name__)


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


def task_from_event(task_id: str, event: SseEvent, *, context: str) -> MeshyTask | None:
    """The task carried by one SSE event, or ``None`` for events that carry none.

    Raises the mapped ``MeshyError`` for an ``event: error`` payload with a status code, and
    ``MeshyStreamBroken`` for one without.
    """
    try:
        data: Any = json.loads(event.data)
    except ValueError:
        if event.event == "error":
            raise MeshyStreamBroken(f"Meshy {context}: event: error {event.data[:200]!r}") from None
        log.debug("ignoring non-JSON SSE event %r on %s", event.event, context)
        return None
    if event.event == "error":
        status = data.get("status_code") if isinstance(data, Mapping) else None
        message, _ = error_text(event.data.encode())
        if isinstance(status, int) and not isinstance(status, bool):
            raise error_for_status(status, message, context=f"{context} (event: error)")
        raise MeshyStreamBroken(f"Meshy {context}: event: error {message}")
    if not isinstance(data, Mapping) or "status" not in data:
        return None
    if not data.get("id"):
        data = {**data, "id": task_id}
    return MeshyTask.from_json(data)
