"""A local OpenAI-compatible server for tests (aiohttp, 127.0.0.1, random port).

Speaks the subset Lumi uses, in the shapes the ``openai`` SDK parses: ``POST /v1/chat/completions``
(plain JSON, or SSE chunks ending in ``data: [DONE]`` when ``stream`` is true), ``POST /v1/moderations``
(text and image inputs) and ``GET /v1/models``. Tests choose the reply (fixed text or a function of the
messages), the moderation scores, and inject failures: HTTP errors with OpenAI's error body, answers
slower than the client's timeout, empty content. Every request is recorded.

    async with FakeOpenAI(reply="a red ceramic teapot") as fake:
        client = ChatClient(fake.base_url, fake.api_key, fake.model)
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

Messages = list[dict[str, Any]]
Reply = str | Callable[[Messages], str]
Scores = Mapping[str, float] | Callable[[Any], Mapping[str, float]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
IMAGE_CATEGORIES = frozenset(
    {"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence", "violence/graphic"}
)

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    error_type, code = _ERROR_TYPES.get(status, ("server_error", None))
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


async def _json_body(request: web.Request) -> Any:
    # The middleware already checked that the body parses; aiohttp caches the bytes.
    raw = await request.read() if request.body_exists else b""
    return json.loads(raw) if raw else None


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    json: Any
    authorization: str | None
    at: float


@dataclass
class _Failure:
    status: int
    remaining: int
    message: str
    path: str | None
    retry_after_ms: int | None


class FakeOpenAI:
    def __init__(
        self,
        *,
        api_key: str | None = "sk-lumi-fake",
        model: str = "fake-chat-1",
        reply: Reply = "A detailed, game-ready 3D model.",
        moderation_scores: Scores | None = None,
        delay: float = 0.0,
    ) -> None:
        self.api_key = api_key or "unused"
        self._require_key = api_key is not None
        self.model = model
        self.models = [model, "omni-moderation-latest"]
        self.reply = reply
        self.moderation_scores: Scores = moderation_scores or {}
        self.delay = delay
        self.empty_reply = False
        self.requests: list[RecordedRequest] = []
        self._failures: list[_Failure] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeOpenAI:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/moderations", self._moderations)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/v1"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ----------------------------------------------------------------------------------------- knobs

    def fail_next(
        self,
        status: int,
        *,
        count: int = 1,
        message: str | None = None,
        path: str | None = None,
        retry_after_ms: int | None = 10,
    ) -> None:
        """Answer the next ``count`` requests (to ``path``, or any) with an OpenAI-style error.

        ``retry_after_ms`` is the header OpenAI sends with 429/5xx; the SDK honours it, which keeps its
        retries fast in tests.
        """
        defaults = {
            401: "Incorrect API key provided.",
            429: "Rate limit reached for requests.",
            500: "The server had an error while processing your request.",
            503: "The engine is currently overloaded, please try again later.",
        }
        self._failures.append(
            _Failure(
                status,
                count,
                message or defaults.get(status, f"Injected error {status}."),
                path,
                retry_after_ms,
            )
        )

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/chat/completions"]

    @property
    def moderation_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/moderations"]

    # ------------------------------------------------------------------------------------ middleware

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body: Any = None
        if request.body_exists:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return _error(400, "We could not parse the JSON body of your request.")
        auth = request.headers.get("Authorization")
        self.requests.append(RecordedRequest(request.method, request.path, body, auth, time.monotonic()))
        for failure in self._failures:
            if failure.remaining > 0 and failure.path in (None, request.path):
                failure.remaining -= 1
                headers = {}
                if failure.retry_after_ms is not None and failure.status in (429, 500, 502, 503):
                    headers["retry-after-ms"] = str(failure.retry_after_ms)
                return _error(failure.status, failure.message, headers)
        self._failures = [failure for failure in self._failures if failure.remaining > 0]
        if self._require_key and auth != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.")
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        return await handler(request)

    # -------------------------------------------------------------------------------------- routes

    async def _models(self, request: web.Request) -> web.StreamResponse:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "lumi-tests"} for name in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    def _answer(self, messages: Messages) -> str:
        if self.empty_reply:
            return ""
        return self.reply(messages) if callable(self.reply) else self.reply

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _error(400, "Expected a JSON object.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty array.")
        model = body.get("model")
        if model not in self.models:
            return _error(404, f"The model `{model}` does not exist or you do not have access to it.")
        text = self._answer(messages)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.get("stream"):
            return await self._stream_chat(request, completion_id, created, str(model), text)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
        completion_tokens = len(text.split())
        return web.json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    async def _stream_chat(
        self, request: web.Request, completion_id: str, created: int, model: str, text: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = text.split(" ")
        pieces = [word if i == 0 else " " + word for i, word in enumerate(words)] if text else []
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": piece} for piece in pieces]
        for index, delta in enumerate([*deltas, {}]):
            chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": "stop" if index == len(deltas) else None}
                ],
            }
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _scores_for(self, item: Any) -> dict[str, float]:
        chosen = self.moderation_scores(item) if callable(self.moderation_scores) else self.moderation_scores
        scores = {category: 0.0001 for category in MODERATION_CATEGORIES}
        scores.update({str(k): float(v) for k, v in chosen.items()})
        return scores

    async def _moderations(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if not isinstance(body, dict) or "input" not in body:
            return _error(400, "Missing required parameter: 'input'.")
        raw_input = body["input"]
        if isinstance(raw_input, str):
            items: list[Any] = [raw_input]
        elif isinstance(raw_input, list) and raw_input and all(isinstance(i, dict) for i in raw_input):
            # Multi-modal parts (text and images) are judged together as one input.
            items = [raw_input]
        elif isinstance(raw_input, list) and raw_input and all(isinstance(i, str) for i in raw_input):
            items = list(raw_input)
        else:
            return _error(400, "Invalid 'input': expected a string, strings, or multi-modal parts.")
        for item in items:
            for part in item if isinstance(item, list) else []:
                url = part.get("image_url", {}).get("url", "") if part.get("type") == "image_url" else ""
                if part.get("type") == "image_url" and not url.startswith(("data:image/", "http")):
                    return _error(400, "Invalid image_url: expected a data URL or an http(s) URL.")
        results = []
        for item in items:
            has_image = isinstance(item, list) and any(p.get("type") == "image_url" for p in item)
            scores = self._scores_for(item)
            applied = {
                c: (["image"] if has_image and c in IMAGE_CATEGORIES else [] if has_image else ["text"])
                for c in MODERATION_CATEGORIES
            }
            results.append(
                {
                    "flagged": any(score >= 0.5 for score in scores.values()),
                    "categories": {c: s >= 0.5 for c, s in scores.items()},
                    "category_scores": scores,
                    "category_applied_input_types": applied,
                }
            )
        model = body.get("model", "omni-moderation-latest")
        return web.json_response({"id": f"modr-{uuid.uuid4().hex[:20]}", "model": model, "results": results})
