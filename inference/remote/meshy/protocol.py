"""Meshy text-to-3D wire format: endpoints, request-kind keys, argument checks and response decoding.

Everything here is pure: it builds paths, validates arguments before a request is sent, and turns
response bodies and HTTP statuses into data or the matching ``MeshyError``.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping, Sequence
from urllib.parse import quote, urlsplit, urlunsplit

from inference.remote.meshy.fields import MAX_ERROR_CHARS, clean_text, excerpt, task_id_problem
from inference.remote.meshy.shapes import (
    MAX_PROMPT_CHARS,
    QUEUE_FULL_MARKERS,
    TARGET_FORMATS,
    MeshyAuthError,
    MeshyBadRequest,
    MeshyError,
    MeshyForbidden,
    MeshyNoCredits,
    MeshyProtocolError,
    MeshyQueueFull,
    MeshyRateLimited,
    MeshyServerError,
    MeshyTaskNotFound,
)

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


def redact_url(url: str) -> str:
    """Signed asset URLs carry credentials in the query string; logs keep only scheme, host and path."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def parse_retry_after(value: str | None) -> float | None:
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


def error_text(body: bytes) -> tuple[str, bool]:
    """The error message (one line, capped) and whether the body was Meshy's own JSON error shape."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return clean_text(text, 300), False
    if isinstance(data, Mapping):
        for key in ("message", "error", "detail"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return clean_text(value, MAX_ERROR_CHARS), True
            if isinstance(value, Mapping) and isinstance(value.get("message"), str):
                return clean_text(value["message"], MAX_ERROR_CHARS), True
        return clean_text(text, 300), True
    return clean_text(text, 300), False


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


def decode_json(body: bytes, *, context: str) -> object:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError as exc:
        raise MeshyProtocolError(f"Meshy {context}: response is not JSON: {body[:200]!r}") from exc


def check_prompt(name: str, text: str, *, required: bool) -> None:
    if required and not text.strip():
        raise MeshyBadRequest(f"{name} is empty", message=f"the {name} is empty.", status=None)
    if len(text) > MAX_PROMPT_CHARS:
        raise MeshyBadRequest(
            f"{name} has {len(text)} characters (limit {MAX_PROMPT_CHARS})",
            message=f"the {name} has {len(text)} characters; Meshy takes at most {MAX_PROMPT_CHARS}.",
            status=None,
        )


def check_choice(name: str, value: str | None, allowed: frozenset[str]) -> None:
    if value is not None and value not in allowed:
        choices = ", ".join(sorted(repr(choice) for choice in allowed))
        raise MeshyBadRequest(
            f"{name}={value!r} not in {choices}", message=f"{name} must be one of {choices}.", status=None
        )


def check_formats(formats: Sequence[str] | None) -> list[str] | None:
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


def result_id(data: object, *, context: str) -> str:
    """The id of a created task, when it is one Lumi can store and log (see ``fields``)."""
    if not isinstance(data, Mapping):
        raise MeshyProtocolError(f"Meshy {context}: no task id in response {excerpt(data)}")
    result = data.get("result")
    problem = task_id_problem(result)
    if problem is not None or not isinstance(result, str):
        raise MeshyProtocolError(f"Meshy {context}: answered {problem}")
    return result


def task_path(task_id: str) -> str:
    if not task_id or not task_id.strip():
        raise MeshyBadRequest("empty task id", message="the task id is empty.", status=None)
    problem = task_id_problem(task_id)
    if problem is not None:
        raise MeshyBadRequest(problem, message="the task id is not one Meshy gives.", status=None)
    return f"{TASKS_PATH}/{quote(task_id, safe='')}"
