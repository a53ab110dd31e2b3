"""The gateway's client of the inference service: OIP requests with retries, a deadline and a breaker.

A restarting service (connection refused, 502/503/504 from its proxy, a timeout) is retried with
exponential backoff until ``retry_deadline_s`` (tenacity). A service that stays down opens the model's
circuit (purgatory) after ``breaker_failures`` failed calls: for ``breaker_reset_s`` every call fails at
once, without a network round trip, and the state change is logged once, so a dead service costs one
log line per interval, not one per image. Whatever fails reaches the caller as ``ServiceUnavailable``
(a ``ModelUnavailable``) with the reason, which moderation turns into its "not checked" outcome.

An answer the service gave on purpose is not retried and does not count against the circuit: the
service itself is up. A model it cannot serve (not loaded there, not served: 503, 404) is
``ServiceRefused``, still a ``ModelUnavailable``; a model that failed on the batch or a request it
refused as malformed (500, 400) is ``RemoteModelError``, as an in-process model's own exception would
be, so the batcher runs the batch's items again one by one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Final

import aiohttp
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from inference.runners.base import ModelUnavailable
from inference.serving.oip import HEADER_LENGTH, OipError, decode_response
from inference.serving.tensors import Tensors

__all__ = ["InferenceClient", "RemoteModelError", "ServiceRefused", "ServiceUnavailable"]

log = logging.getLogger(__name__)

_RETRIED_STATUSES: Final = frozenset({502, 503, 504})
# A body larger than this from the service is a fault, not an answer (results are small tensors).
_MAX_RESPONSE_BYTES: Final = 64 << 20


class ServiceUnavailable(ModelUnavailable):
    """The inference service could not give this model's results; ``reason`` says why."""


class ServiceRefused(ServiceUnavailable):
    """The service is up and cannot serve this model now (its message is the reason)."""


class RemoteModelError(RuntimeError):
    """The service ran the model and it failed, or the service refused the request as malformed."""


class _Transient(Exception):
    """A failure worth retrying: the service may be restarting."""


class InferenceClient:
    """One per gateway process; coroutines run on the loop the client is first used on."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        retry_deadline_s: float = 20.0,
        breaker_failures: int = 5,
        breaker_reset_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry_deadline_s = retry_deadline_s
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=breaker_failures,
            default_ttl=breaker_reset_s,
            exclude=[ServiceRefused, RemoteModelError, asyncio.CancelledError],
        )
        self._breakers.add_listener(self._breaker_changed)
        self.breaker_reset_s = breaker_reset_s
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                raise_for_status=False,
            )
        return self._session

    async def infer(self, model: str, body: bytes, headers: dict[str, str]) -> Tensors:
        """The model's output tensors for an encoded request (``encode_request``; encoded by the caller,
        off the event loop). Raises ``ServiceUnavailable`` with the reason."""
        try:
            async with await self._breakers.get_breaker(model):
                return await self._retried(model, body, headers)
        except OpenedState:
            raise ServiceUnavailable(
                model,
                f"the inference service at {self.base_url} failed repeatedly; "
                f"not asked again for up to {self.breaker_reset_s:g} s",
            ) from None

    async def breaker_state(self, model: str) -> str:
        """``closed``, ``opened`` or ``half-opened``."""
        return (await self._breakers.get_breaker(model)).context.state

    async def _retried(self, model: str, body: bytes, headers: dict[str, str]) -> Tensors:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(self.retry_deadline_s) | stop_after_attempt(50),
                wait=wait_exponential_jitter(multiplier=0.1, max=2.0, jitter=0.1),
                retry=retry_if_exception_type(_Transient),
                reraise=True,
            ):
                with attempt:
                    return await self._post(model, body, headers)
        except _Transient as error:
            raise ServiceUnavailable(
                model, f"the inference service at {self.base_url} is unreachable: {error}"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover - tenacity either returns or raises

    async def _post(self, model: str, body: bytes, headers: dict[str, str]) -> Tensors:
        url = f"{self.base_url}/v2/models/{model}/infer"
        try:
            async with self._client().post(url, data=body, headers=headers) as response:
                payload = await response.content.read(_MAX_RESPONSE_BYTES + 1)
                if len(payload) > _MAX_RESPONSE_BYTES:
                    raise ServiceUnavailable(model, "the inference service sent an oversized answer")
                status, header_length = response.status, response.headers.get(HEADER_LENGTH)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
            raise _Transient(_describe(error)) from error
        except TimeoutError:
            raise _Transient(f"no answer within {self.timeout_s:g} s") from None
        if status != 200:
            self._refuse(model, status, payload)
        try:
            return decode_response(payload, header_length).outputs
        except OipError as error:
            raise ServiceUnavailable(model, f"the inference service's answer is malformed: {error}") from None

    def _refuse(self, model: str, status: int, payload: bytes) -> None:
        """Raise the error a non-200 answer stands for."""
        answered = _lumi_error(payload)
        if not answered and status in _RETRIED_STATUSES:
            raise _Transient(f"HTTP {status}")
        if not answered:
            # Not Lumi's ingress (no app deployed behind the proxy, another server at that address).
            raise ServiceUnavailable(
                model, f"the inference service at {self.base_url} answered HTTP {status}: {_message(payload)}"
            )
        if status in (404, 503):
            raise ServiceRefused(model, f"the inference service cannot serve it: {_message(payload)}")
        raise RemoteModelError(
            f"model {model!r} in the inference service: HTTP {status}: {_message(payload)}"
        )

    def _breaker_changed(self, circuit: str, event_type: str, event: Any) -> None:
        if event_type != "state_changed":
            return
        state = getattr(event, "state", "")
        if state == "opened":
            log.error(
                "inference service %s: model %r failed repeatedly; its calls fail at once for %g s",
                self.base_url,
                circuit,
                self.breaker_reset_s,
            )
        elif state == "closed":
            log.info("inference service %s: model %r answers again", self.base_url, circuit)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _lumi_error(payload: bytes) -> bool:
    """Whether the body is an OIP error object (the service answered), not a proxy's page."""
    return payload.startswith(b'{"error"')


def _message(payload: bytes) -> str:
    try:
        error = json.loads(payload).get("error")
    except (ValueError, AttributeError):
        error = None
    return str(error) if error is not None else payload[:200].decode("utf-8", "replace").strip()
