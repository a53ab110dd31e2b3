"""Meshy text-to-3D: the public surface (client, task shape, errors); import from here.

The implementation lives in shapes (task dataclass, error hierarchy), protocol (endpoints, argument
checks, response decoding, status-to-error mapping), sse (progress stream parsing), transport (HTTP
session, retries, downloads) and client (task creation, reads, SSE with polling fallback).
"""

from __future__ import annotations

from inference.remote.meshy.client import MeshyClient, ProgressCallback
from inference.remote.meshy.protocol import (
    DEFAULT_BASE_URL,
    KIND_ASSET,
    KIND_BALANCE,
    KIND_CREATE,
    KIND_DELETE,
    KIND_GET,
    KIND_LIST,
    KIND_STREAM,
    error_for_status,
)
from inference.remote.meshy.shapes import (
    MAX_PROMPT_CHARS,
    MESHY_TEST_MODE_KEY,
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
    MeshyTaskFailed,
    MeshyTaskNotFound,
    MeshyTimeout,
)
from inference.remote.meshy.sse import SseEvent, SseParser
from inference.remote.meshy.transport import RetryPolicy

__all__ = [
    "DEFAULT_BASE_URL",
    "KIND_ASSET",
    "KIND_BALANCE",
    "KIND_CREATE",
    "KIND_DELETE",
    "KIND_GET",
    "KIND_LIST",
    "KIND_STREAM",
    "MAX_PROMPT_CHARS",
    "MESHY_TEST_MODE_KEY",
    "MeshyAssetUnavailable",
    "MeshyAuthError",
    "MeshyBadRequest",
    "MeshyClient",
    "MeshyConnectionError",
    "MeshyDeadlineExceeded",
    "MeshyDownloadTooLarge",
    "MeshyError",
    "MeshyForbidden",
    "MeshyNoCredits",
    "MeshyProtocolError",
    "MeshyQueueFull",
    "MeshyRateLimited",
    "MeshyServerError",
    "MeshyStatus",
    "MeshyStreamBroken",
    "MeshyTask",
    "MeshyTaskFailed",
    "MeshyTaskNotFound",
    "MeshyTimeout",
    "ProgressCallback",
    "RetryPolicy",
    "SseEvent",
    "SseParser",
    "error_for_status",
]
