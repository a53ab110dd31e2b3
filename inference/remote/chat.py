"""OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, ...) through ``openai.AsyncOpenAI``.

Every failure reaches the caller as ``ChatUnavailable`` with a ``kind`` and a plain-language
``reason``, so the prompt enhancer can fall back to its local backends without knowing the SDK's
exception tree.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Literal

import openai
from openai.types.chat import ChatCompletionMessageParam

log = logging.getLogger(__name__)

UnavailableKind = Literal[
    "timeout",
    "connection",
    "auth",
    "forbidden",
    "not_found",
    "rate_limited",
    "bad_request",
    "server",
    "empty",
    "error",
]


class OpenAIUnavailable(Exception):
    """An OpenAI-compatible service could not give an answer. ``reason`` is safe to log and show."""

    def __init__(self, reason: str, *, kind: UnavailableKind = "error", status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind: UnavailableKind = kind
        self.status = status


class ChatUnavailable(OpenAIUnavailable):
    pass


def describe_openai_error(exc: openai.OpenAIError, service: str) -> tuple[UnavailableKind, str, int | None]:
    """Turn an SDK exception into (kind, reason, HTTP status) with text an operator can act on."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout", f"{service} did not answer in time", None
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f" ({type(cause).__name__})" if cause is not None else ""
        return "connection", f"could not connect to {service}{detail}", None
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = _status_message(exc)
        if status == 401:
            return "auth", f"{service} rejected the API key (401): {message}", status
        if status == 403:
            return "forbidden", f"{service} refused access (403): {message}", status
        if status == 404:
            return "not_found", f"{service} does not know the model or endpoint (404): {message}", status
        if status == 429:
            return "rate_limited", f"{service} is rate limiting or out of quota (429): {message}", status
        if status >= 500:
            return "server", f"{service} had a server error ({status}): {message}", status
        return "bad_request", f"{service} rejected the request ({status}): {message}", status
    return "error", f"{service} failed: {type(exc).__name__}: {exc}", None


def _status_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
    return str(exc.message)[:300]


class ChatClient:
    """One model on one OpenAI-compatible endpoint.

    ``max_retries`` is the SDK's own retry count (429, 5xx, timeouts, connection errors, with
    backoff honouring ``retry-after``). ``api_key`` may be empty for local servers that ignore it.
    ``token_limit_field`` exists because OpenAI's reasoning models reject ``max_tokens`` while older
    OpenAI-compatible servers only know ``max_tokens``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 2,
        token_limit_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.token_limit_field = token_limit_field
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            timeout=timeout,
            max_retries=max_retries,
        )

    async def complete(
        self, system: str, user: str, *, max_tokens: int = 400, temperature: float = 0.7
    ) -> str:
        """Return the assistant's answer, stripped; raise ``ChatUnavailable`` instead of SDK errors."""
        service = f"chat model {self.model!r} at {self.base_url}"
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        try:
            if self.token_limit_field == "max_completion_tokens":
                response = await self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    temperature=temperature,
                    max_completion_tokens=max_tokens,
                )
            else:
                response = await self._client.chat.completions.create(
                    model=self.model, messages=messages, temperature=temperature, max_tokens=max_tokens
                )
        except openai.OpenAIError as exc:
            kind, reason, status = describe_openai_error(exc, service)
            log.warning("chat completion failed: %s", reason)
            raise ChatUnavailable(reason, kind=kind, status=status) from exc
        choices = response.choices or []
        content: str | None = choices[0].message.content if choices else None
        if not content or not content.strip():
            refusal = getattr(choices[0].message, "refusal", None) if choices else None
            reason = f"{service} returned an empty answer" + (f" (refusal: {refusal})" if refusal else "")
            log.warning("chat completion failed: %s", reason)
            raise ChatUnavailable(reason, kind="empty")
        if choices[0].finish_reason == "length":
            log.info("chat answer from %s hit the %d-token limit", service, max_tokens)
        return content.strip()

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
