"""Request recording and failure injection for the fake Discord's HTTP side, and its JSON error shape."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from aiohttp import BodyPartReader, web

from tests.fakes.discord_api.payloads import guess_content_type
from tests.fakes.discord_api.protocol import JsonDict

T = TypeVar("T")


class UploadedFile(NamedTuple):
    filename: str
    data: bytes
    content_type: str


@dataclass
class RecordedRequest:
    """One HTTP call the client made. `json` is the JSON body, or `payload_json` of a multipart body."""

    index: int
    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[UploadedFile]
    form: dict[str, str]
    headers: dict[str, str]
    status: int = 0
    response: Any = None
    handled: bool = True

    def __str__(self) -> str:
        return f"#{self.index} {self.method} {self.path} -> {self.status}"


class ObservedList(Generic[T]):
    """An append-only list that coroutines can wait on ("the first item after index N matching P")."""

    def __init__(self, summarize: Callable[[T], str] = str) -> None:
        self._items: list[T] = []
        self._changed = asyncio.Event()
        self._summarize = summarize

    def append(self, item: T) -> None:
        self._items.append(item)
        self.notify()

    def notify(self) -> None:
        """Wake waiters to re-check their predicates (items are dicts that may change in place)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items))

    def __getitem__(self, index: int) -> T:
        return self._items[index]

    async def wait_for(
        self,
        predicate: Callable[[T], bool],
        *,
        since: int = 0,
        timeout: float,  # noqa: ASYNC109 - a test helper that reports what it saw when time runs out
        describe: str,
    ) -> T:
        deadline = time.monotonic() + timeout
        while True:
            # Everything since `since` is checked again on each wake-up: items may have changed in place.
            for item in self._items[since:]:
                if predicate(item):
                    return item
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = "\n  ".join(self._summarize(item) for item in self._items[since:]) or "(nothing)"
                raise AssertionError(f"timed out after {timeout}s waiting for {describe}; saw:\n  {seen}")
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                continue


@dataclass
class FailureRule:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    retry_after: float
    body: JsonDict | None


class ApiError(Exception):
    """A Discord JSON error (`{"code": ..., "message": ...}`) with its HTTP status."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(status: int, payload: Any) -> web.Response:
    # Bytes, not text, so aiohttp adds no charset: discord.py only decodes exactly "application/json".
    return web.Response(status=status, body=json.dumps(payload).encode(), content_type="application/json")


async def parse_body(request: web.Request) -> tuple[Any, list[UploadedFile], dict[str, str]]:
    if request.content_type.startswith("multipart/"):
        files: list[UploadedFile] = []
        form: dict[str, str] = {}
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue  # discord.py never nests multipart bodies
            if part.filename is not None:
                data = await part.read()
                content_type = part.headers.get("Content-Type") or guess_content_type(part.filename)
                files.append(UploadedFile(part.filename, bytes(data), content_type))
            elif part.name:
                form[part.name] = await part.text()
        payload = json.loads(form["payload_json"]) if "payload_json" in form else None
        return payload, files, form
    raw = await request.read()
    if not raw:
        return None, [], {}
    if request.content_type == "application/json":
        return json.loads(raw), [], {}
    return None, [], {"body": raw.decode("utf-8", "replace")}


def failure_response(rule: FailureRule) -> web.Response:
    if rule.status == 429:
        limited = {"message": "You are being rate limited.", "retry_after": rule.retry_after, "global": False}
        body = rule.body or limited
        response = json_response(429, body)
        # Without `Via`, discord.py takes a 429 for a Cloudflare ban and raises, not retries.
        response.headers["Via"] = "1.1 google"
        response.headers["Retry-After"] = str(max(1, round(rule.retry_after)))
        response.headers["X-RateLimit-Scope"] = "user"
        return response
    messages = {403: (50013, "Missing Permissions"), 404: (10008, "Unknown Message")}
    code, message = messages.get(rule.status, (0, f"{rule.status}: injected failure"))
    return json_response(rule.status, rule.body or {"code": code, "message": message})
