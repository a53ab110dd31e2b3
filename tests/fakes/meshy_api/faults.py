"""Failure injection and account limits for the fake Meshy server.

The knobs inject what live Meshy does now and then: 5xx, 429 rate limits, queue limits, 402, proxy error
pages, SSE streams that break, and tasks that end FAILED; and what a hostile or broken Meshy-compatible
server does: requests it accepts and never answers, and task ids of many megabytes. ``FakeMeshy`` mixes
them in; the server asks on every request whether an injected error answers it or it is to be held,
takes stream cuts, task failures and oversized ids as it opens streams and creates tasks, and enforces
the per-key requests-per-second limit.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from aiohttp import web

from tests.fakes.meshy_api.requests import error_response
from tests.fakes.meshy_api.tasks import TEST_MODE_KEY

BUSY_MESSAGE = "The server is busy. Please try again later."
INTERNAL_MESSAGE = "Internal server error."


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
class HeldRequests:
    remaining: int
    method: str | None
    path_contains: str | None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path_contains is None or self.path_contains in path


@dataclass
class StreamBreak:
    remaining: int
    after_events: int
    mode: str


@dataclass
class ScheduledFailure:
    remaining: int
    message: str
    mode: str | None
    after_fraction: float


class MeshyFaults:
    """Scheduled errors, stream cuts and task failures, and the sliding one-second request window."""

    def __init__(self) -> None:
        self._errors: list[InjectedError] = []
        self._stream_breaks: list[StreamBreak] = []
        self._failures: list[ScheduledFailure] = []
        self._recent: dict[str, deque[float]] = {}
        self._held: list[HeldRequests] = []
        self._huge_ids: list[int] = []
        # Requests accepted and never answered so far (see ``hang_next``).
        self.held_requests = 0

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
        self._stream_breaks.append(StreamBreak(remaining=count, after_events=after_events, mode=mode))

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
            ScheduledFailure(remaining=count, message=message, mode=mode, after_fraction=after_fraction)
        )

    def hang_next(
        self, count: int = 1, *, method: str | None = None, path_contains: str | None = None
    ) -> None:
        """Accept the next ``count`` matching requests and never answer them (until the server closes),
        as a server does that is up but stuck: the client's connection opens, no byte comes back."""
        self._held.append(HeldRequests(remaining=count, method=method, path_contains=path_contains))

    def huge_task_ids_next(self, count: int = 1, *, size: int = 50 * 1024 * 1024) -> None:
        """Give the next ``count`` created tasks an id of ``size`` characters: the create answer, the
        task's views and its list entries all carry it."""
        self._huge_ids.extend([size] * count)

    # ------------------------------------------------------------------------------------- consuming

    def take_hang(self, method: str, path: str) -> bool:
        """Whether this request is one to hold without an answer (using one of its turns)."""
        for held in self._held:
            if held.remaining > 0 and held.matches(method, path):
                held.remaining -= 1
                self.held_requests += 1
                return True
        return False

    def take_task_id(self, default: str) -> str:
        """The id for a task being created: ``default``, or an oversized one when one is scheduled."""
        if not self._huge_ids:
            return default
        size = self._huge_ids.pop(0)
        return (default.replace("-", "") * (size // 32 + 1))[:size]

    def injected_response(self, method: str, path: str) -> web.Response | None:
        """The answer of the first injected error that matches this request, using one of its turns."""
        for error in self._errors:
            if error.remaining > 0 and error.matches(method, path):
                error.remaining -= 1
                headers = {} if error.retry_after is None else {"Retry-After": f"{error.retry_after:g}"}
                if error.raw_body is not None:
                    return web.Response(
                        status=error.status, text=error.raw_body, content_type="text/html", headers=headers
                    )
                return error_response(error.status, error.message, headers)
        self._errors = [error for error in self._errors if error.remaining > 0]
        return None

    def take_stream_break(self) -> StreamBreak | None:
        for cut in self._stream_breaks:
            if cut.remaining > 0:
                cut.remaining -= 1
                return cut
        return None

    def take_failure(self, mode: str) -> ScheduledFailure | None:
        for failure in self._failures:
            if failure.remaining > 0 and failure.mode in (None, mode):
                failure.remaining -= 1
                return failure
        return None

    def rate_limited(self, key: str, limit: float | None) -> web.Response | None:
        """A 429 when ``key`` already made ``limit`` requests within the last second (test mode is free)."""
        if limit is None or key == TEST_MODE_KEY:
            return None
        now = time.monotonic()
        window = self._recent.setdefault(key, deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= limit:
            retry_after = max(0.01, 1.0 - (now - window[0]))
            return error_response(
                429, "RateLimitExceeded: too many requests, slow down.", {"Retry-After": f"{retry_after:.3f}"}
            )
        window.append(now)
        return None
