"""The ``classifiers`` family of the inference service: the registered custom classifiers, served once.

A replica reads the classifier registry the gateways read through a ``ClassifierSource`` (built in the
replica by the callable ``lumi serve-models`` passes in: the service's code outside ``inference``
knows where the registry is, a folder or the blob store) and serves each registration as
``classifier-<id>``, loaded on its first request through a ``ModelRegistry`` (lazily, under a lock,
with a warm-up and a remembered failure), from the model folder the source hands over (checked
against the registration's SHA-256 there) and only if its metadata is the registration's.

It follows the registry: a registration that disappears, or comes back with another model, is
unloaded at the next request after the source sees it (the source re-reads the registry at most every
few seconds), and a request for a model or a digest the service does not know makes the source
re-read the registry at once (at most once a second per model) before the answer: 404 for a
classifier that is not registered, 503 for a digest that is not the registration's (the gateway and
the service read different registries, or one of them has not caught up yet), 503 with the reason for
one that cannot load. Batching is the other families': ``@serve.batch`` sized in images, one model call per
classifier in the batch, or Lumi's ``DynamicBatcher`` in the replica (``batching="lumi"``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, cast

from ray import serve
from ray.serve.metrics import Histogram

from inference.classifier import KerasClassifierRunner, classifier_files, read_metadata
from inference.device import Device
from inference.registry import BatchConfig, ModelHandle, ModelRegistry, ModelUnavailable
from inference.serving.app import Failure, FamilyResources, predict_through_batcher
from inference.serving.classifier_codec import (
    ClassifierCodec,
    ClassifierSource,
    ClassifierSourceFactory,
    ClassifierSpec,
    asked_digest,
)
from inference.serving.models import ServedRunner, ServeOptions
from inference.serving.oip import OipError
from inference.serving.tensors import Tensors

__all__ = ["ClassifierFamily", "bind_classifier_family"]

log = logging.getLogger(__name__)

# A request for a model or digest the service does not know re-reads the registry at most this often
# (per model).
_FRESH_READ_INTERVAL_S: Final = 1.0


def _items(request: tuple[str, Tensors]) -> int:
    pixels = request[1].get("PIXELS")
    return len(pixels) if pixels is not None and pixels.ndim else 1


@serve.deployment(max_ongoing_requests=64)
class ClassifierFamily:
    """The registered classifiers in a replica; ``infer`` answers one OIP request's tensors."""

    def __init__(self, options: ServeOptions, open_source: ClassifierSourceFactory) -> None:
        self.serve_options = options
        self.source = open_source()
        self.registry = ModelRegistry(options.device)
        self._batch = BatchConfig(max_batch_size=options.max_batch_size, max_wait_ms=options.batch_wait_ms)
        self._served: dict[str, ClassifierSpec] = {}
        self._runners: dict[str, ServedRunner] = {}
        self._threads: dict[str, ThreadPoolExecutor] = {}
        self._sync_lock = asyncio.Lock()
        self._fresh_read_at: dict[str, float] = {}
        batched: Any = self._batched_infer
        batched.set_max_batch_size(options.max_batch_size)
        batched.set_batch_wait_timeout_s(options.batch_wait_ms / 1000.0)
        self._batch_size = Histogram(
            "lumi_served_batch_size",
            description="Items per model call in the inference service.",
            boundaries=[1, 2, 4, 8, 16, 32, 64],
            tag_keys=("model",),
        )

    def alive(self) -> bool:
        return True

    def batch_sizes(self) -> dict[str, list[int]]:
        return {name: list(runner.batch_sizes) for name, runner in self._runners.items()}

    async def ready(self, model: str) -> Failure | None:
        """None when ``model`` is loaded (loading it now if needed), else why it cannot be: 404 for a
        classifier that is not registered, 503 for one that cannot load."""
        found = await self._handle(model, None)
        return found if isinstance(found, Failure) else None

    async def infer(self, model: str, inputs: Tensors) -> Tensors | Failure:
        if self.serve_options.batching == "lumi":
            return await self._infer_through_batcher(model, inputs)
        outcome: Tensors | Failure = await self._batched_infer((model, inputs))
        return outcome

    @serve.batch(
        max_batch_size=16, batch_wait_timeout_s=0.01, batch_size_fn=lambda batch: sum(map(_items, batch))
    )
    async def _batched_infer(self, requests: list[tuple[str, Tensors]]) -> list[Tensors | Failure]:
        outcomes: list[Tensors | Failure] = [Failure(500, "no outcome")] * len(requests)
        by_model: dict[str, list[int]] = {}
        for index, (model, _inputs) in enumerate(requests):
            by_model.setdefault(model, []).append(index)
        # Each classifier has its own thread: the classifiers of one batch run at once.
        groups = list(by_model.items())
        answers = await asyncio.gather(
            *(self._run(model, [requests[i][1] for i in indices]) for model, indices in groups)
        )
        for (_model, indices), results in zip(groups, answers, strict=True):
            for index, outcome in zip(indices, results, strict=True):
                outcomes[index] = outcome
        return outcomes

    async def _run(self, model: str, requests: Sequence[Tensors]) -> list[Tensors | Failure]:
        """One model call for the images of every request that could be read."""
        outcomes: list[Tensors | Failure] = []
        readable: list[tuple[int, list[Any]]] = []
        handle: ModelHandle[Any, Any] | None = None
        for index, inputs in enumerate(requests):
            found = await self._handle_for(model, inputs)
            if isinstance(found, Failure):
                outcomes.append(found)
                continue
            handle = found
            try:
                readable.append((index, _served(found).codec.split_items(inputs)))
                outcomes.append({})
            except OipError as error:
                outcomes.append(Failure(400, str(error)))
        flat = [item for _, items in readable for item in items]
        if handle is None or not flat:
            return outcomes
        runner = _served(handle)
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._thread(model), runner.predict_batch, flat)
        except Exception as error:
            log.exception("model %r failed on a batch of %d", model, len(flat))
            failure = Failure(500, f"model {model!r} failed: {error}")
            return [failure if isinstance(outcome, dict) else outcome for outcome in outcomes]
        self._batch_size.observe(len(flat), tags={"model": model})
        start = 0
        for index, items in readable:
            outcomes[index] = runner.codec.encode_results(results[start : start + len(items)])
            start += len(items)
        return outcomes

    async def _infer_through_batcher(self, model: str, inputs: Tensors) -> Tensors | Failure:
        found = await self._handle_for(model, inputs)
        if isinstance(found, Failure):
            return found
        return await predict_through_batcher(model, found, _served(found).codec, inputs)

    # -- following the registry ---------------------------------------------------------------------------

    async def _handle_for(self, model: str, inputs: Tensors) -> ModelHandle[Any, Any] | Failure:
        try:
            digest = asked_digest(inputs)
        except OipError as error:
            return Failure(400, str(error))
        return await self._handle(model, digest)

    async def _handle(self, model: str, digest: str | None) -> ModelHandle[Any, Any] | Failure:
        """The loaded model that is registration ``digest`` of ``model`` (None: the current one)."""
        registrations = await self._registrations(fresh=False)
        spec = registrations.get(model)
        if spec is None or (digest is not None and spec.sha256 != digest):
            registrations = await self._registrations(fresh=self._may_read_for(model))
            spec = registrations.get(model)
        if spec is None:
            known = ", ".join(sorted(registrations, key=_model_id)) or "none"
            return Failure(
                404,
                f"model {model!r} is not registered in the classifier registry the service reads "
                f"({self.source.description}; registered: {known})",
            )
        if digest is not None and spec.sha256 != digest:
            return Failure(
                503,
                f"model {model!r} in the service's classifier registry ({self.source.description}) is "
                f"the model with sha256 {spec.short_digest}…, not the {digest[:12]}… asked for: the "
                "gateway and the service read different registries, or one of them has not caught up yet",
            )
        if not self.registry.is_registered(model):
            self.registry.register(model, self._factory(spec), batch=self._batch)
            self._served[model] = spec
        try:
            return await self.registry.get(model)
        except ModelUnavailable as error:
            return Failure(503, f"model {model!r} is unavailable: {error.reason}")

    def _may_read_for(self, model: str) -> bool:
        """Whether a request for ``model`` may have the registry read now (once a second per model)."""
        now = time.monotonic()
        if now - self._fresh_read_at.get(model, -float("inf")) < _FRESH_READ_INTERVAL_S:
            return False
        if len(self._fresh_read_at) > 4096:
            self._fresh_read_at.clear()
        self._fresh_read_at[model] = now
        return True

    async def _registrations(self, *, fresh: bool) -> Mapping[str, ClassifierSpec]:
        registrations = await self.source.registrations(fresh=fresh)
        await self._unload_changed(registrations)
        return registrations

    async def _unload_changed(self, registrations: Mapping[str, ClassifierSpec]) -> None:
        """Unload the classifiers no longer registered, or registered with another model since."""
        async with self._sync_lock:
            for model, spec in list(self._served.items()):
                current = registrations.get(model)
                if current is not None and current.sha256 == spec.sha256:
                    continue
                self._served.pop(model, None)
                self._runners.pop(model, None)
                await self.registry.unregister(model)
                thread = self._threads.pop(model, None)
                if thread is not None:
                    thread.shutdown(wait=False)
                await asyncio.to_thread(self.source.forget, model)
                change = "no longer registered" if current is None else "registered with another model"
                log.info("custom classifier %s unloaded (%s)", model, change)

    def _factory(self, spec: ClassifierSpec) -> Callable[[Device], ServedRunner]:
        def build(device: Device) -> ServedRunner:
            inner = _SourcedClassifierRunner(self.source, spec, device)
            runner = self._runners[spec.model] = ServedRunner(ClassifierCodec(spec), inner)
            return runner

        return build

    def _thread(self, model: str) -> ThreadPoolExecutor:
        # One thread per classifier for @serve.batch's calls (the registry loads on its own thread).
        thread = self._threads.get(model)
        if thread is None:
            thread = self._threads[model] = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"lumi-serve-{model}"
            )
        return thread


class _SourcedClassifierRunner(KerasClassifierRunner):
    """A registration's Keras runner: its folder comes from the source when it loads (on the model's
    thread), and it loads only a model whose input size and classes are the registration's."""

    def __init__(self, source: ClassifierSource, spec: ClassifierSpec, device: Device) -> None:
        super().__init__(Path(), device, name=spec.model)
        self._source = source
        self._spec = spec

    def load(self) -> None:
        self.path = self._source.model_folder(self._spec.model)
        try:
            _model_path, metadata_path = classifier_files(self.path)
            metadata = read_metadata(metadata_path)
        except ValueError as error:
            raise ModelUnavailable(self.name, str(error)) from None
        if (metadata.input_size, metadata.classes) != (self._spec.input_size, self._spec.classes):
            raise ModelUnavailable(
                self.name,
                f"the metadata in {str(metadata_path)!r} is not the registration's "
                "(input size or classes differ): register it again",
            )
        super().load()


def _served(handle: ModelHandle[Any, Any]) -> ServedRunner:
    return cast(ServedRunner, handle.runner)


def _model_id(model: str) -> int:
    return int(model.rsplit("-", 1)[1])


def bind_classifier_family(
    options: ServeOptions, open_source: ClassifierSourceFactory | None, share: FamilyResources
) -> Any:
    """The ``classifiers`` deployment with its replicas and CPU/GPU share, bound for ``build_app``."""
    if open_source is None:
        raise ValueError("the 'classifiers' family needs a classifier source (build_app's classifier_source)")
    return (
        cast(Any, ClassifierFamily)
        .options(
            name="lumi-classifiers",
            num_replicas=share.replicas,
            ray_actor_options={"num_cpus": share.num_cpus, "num_gpus": share.num_gpus},
        )
        .bind(options, open_source)
    )
