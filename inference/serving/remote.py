"""Runners that send their batches to the inference service, for gateways with ``INFERENCE_URL`` set.

A ``RemoteRunner`` keeps the ``Runner`` contract (``predict_batch(items) -> results``, same length,
on the model's worker thread), so the registry, the batchers and everything above them are unchanged:
the gateway's batcher still groups its callers, and the service's batcher groups the gateways. On the
worker thread the runner prepares the batch's tensors (the codec's gateway half: decoding and resizing
stay in the gateway) and encodes the request; the HTTP exchange runs on the event loop, where the
client's retries and circuit breaker live; the thread waits for it. Any failure reaches every caller
of the batch as ``ServiceUnavailable``, a ``ModelUnavailable`` with the reason.

Loading is instant and asks the service nothing: a gateway starts while the service is still starting.
The custom classifiers (``classifier-<id>``) come and go while a gateway runs: the moderation service
asks ``classifier_factory`` for each registration's runner, whose codec carries the registration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from inference.runners.base import Runner
from inference.serving.classifier_codec import ClassifierCodec, ClassifierSpec
from inference.serving.client import InferenceClient, ServiceUnavailable
from inference.serving.codecs import CODECS, Codec
from inference.serving.oip import OipError, encode_request

__all__ = ["RemoteModels", "RemoteRunner"]

T = TypeVar("T")
R = TypeVar("R")


class RemoteRunner(Generic[T, R]):
    device = "remote"

    def __init__(
        self, codec: Codec[T, Any, R], client: InferenceClient, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.codec = codec
        self.client = client
        self._loop = loop
        # The client's own deadline ends every call; this only guards against a loop that stopped.
        self._wait_s = client.retry_deadline_s + 2 * client.timeout_s + 5.0

    @property
    def name(self) -> str:
        return self.codec.name

    def load(self) -> None:
        """Nothing to load here: the service loads the model on its first request."""

    def predict_batch(self, items: Sequence[T]) -> list[R]:
        if not items:
            return []
        try:
            body, headers = encode_request(self.codec.encode_items(items))
        except OipError as error:
            raise ServiceUnavailable(self.name, f"the batch could not be encoded: {error}") from error
        call = asyncio.run_coroutine_threadsafe(self.client.infer(self.name, body, headers), self._loop)
        try:
            outputs = call.result(timeout=self._wait_s)
        except TimeoutError:
            call.cancel()
            raise ServiceUnavailable(self.name, "the inference service call did not finish") from None
        try:
            return self.codec.decode_results(outputs, len(items))
        except OipError as error:
            raise ServiceUnavailable(
                self.name, f"the inference service's results are malformed: {error}"
            ) from error

    def close(self) -> None:
        """The client is shared by every remote runner; ``RemoteModels.close`` closes it."""


class RemoteModels:
    """What a registry needs to hand out remote runners: which models the service has, and a factory.
    ``classifiers``: whether the service also runs the registered custom classifiers."""

    def __init__(
        self, client: InferenceClient, *, models: Sequence[str] | None = None, classifiers: bool = True
    ) -> None:
        self.client = client
        self.classifiers = classifiers
        self.models = frozenset(models if models is not None else CODECS)
        unknown = self.models - set(CODECS)
        if unknown:
            raise ValueError(f"no remote form for models {sorted(unknown)}; known: {sorted(CODECS)}")

    def serves(self, name: str) -> bool:
        return name in self.models

    def factory(self, name: str) -> Callable[[str], Runner[Any, Any]]:
        """A runner factory for the registry (called on the event loop, in the registry's ``_load``)."""
        return self._factory(CODECS[name])

    def classifier_factory(self, spec: ClassifierSpec) -> Callable[[str], Runner[Any, Any]]:
        """The runner factory of a registered custom classifier, ``spec.model`` in the service."""
        return self._factory(ClassifierCodec(spec))

    def _factory(self, codec: Codec[Any, Any, Any]) -> Callable[[str], Runner[Any, Any]]:
        def build(_device: str) -> Runner[Any, Any]:
            return RemoteRunner(codec, self.client, asyncio.get_running_loop())

        return build

    async def close(self) -> None:
        await self.client.close()
