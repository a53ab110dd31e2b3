"""The Ray Serve application behind ``lumi serve-models``: Lumi's runners, served once for every gateway.

An ingress deployment speaks the Open Inference Protocol over HTTP (``/v2/health/live``,
``/v2/health/ready``, ``/v2/models/<name>``, ``/v2/models/<name>/ready``, ``/v2/models/<name>/infer``,
plus ``/v2/debug/batches``) and routes each request through a deployment handle to its model family:
moderation (NudeNet, open_nsfw), perception (faces, emotions, objects) and the comment model. Each
family is a deployment with its own replicas and CPU/GPU share; a replica loads a model on its first
request, through a ``ModelRegistry`` of served runners.

Batching across gateways: with ``batching="serve"`` (the default) each model has its own
``@serve.batch`` queue, sized in items rather than requests (``batch_size_fn``), one model call per
batch, so the models of a family run at the same time, each on its own thread; with
``batching="lumi"`` each request's items go through the replica's ``DynamicBatcher`` (the gateway's
own batcher, here shared by every gateway's requests). ``bench/serving.py`` compares them.

Prometheus: Ray exports Serve's own metrics (``ray_serve_num_http_requests``,
``ray_serve_deployment_processing_latency_ms``, ``ray_serve_actual_batch_size``,
``ray_serve_batch_wait_time_ms``, ...) and Lumi's ``ray_lumi_served_batch_size`` (items per model call,
by model) on each Ray node's metrics port (``ray start --metrics-export-port``, or
``LUMI_SERVE_METRICS_PORT`` for ``lumi serve-models``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, cast

from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.serve.metrics import Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from inference.device import Device
from inference.registry import BatchConfig, ModelHandle, ModelRegistry, ModelUnavailable
from inference.serving.classifier_codec import CLASSIFIER_FAMILY, is_classifier_model
from inference.serving.codecs import CODECS, Codec
from inference.serving.models import FAMILIES, FAMILY_OF, ServedRunner, ServeOptions, served_factory
from inference.serving.oip import (
    HEADER_LENGTH,
    OipError,
    decode_request,
    encode_error,
    encode_response,
)
from inference.serving.tensors import Tensors
from inference.threads import apply_thread_policy

__all__ = ["Failure", "ModelFamily", "OipIngress", "build_app", "predict_through_batcher"]

log = logging.getLogger(__name__)

# A request bigger than this is refused before it is read whole: 16 images at 1024x1024 fit.
MAX_REQUEST_BYTES: Final = 64 << 20
_READY_TIMEOUT_S: Final = 5.0
# A stopping replica looks for requests still running every 0.2 s (Serve's default, 2 s, made a stop
# take 2 s per deployment, one after the other) and waits at most 5 s for them: a batch takes less.
_PROMPT_SHUTDOWN: Final = {"graceful_shutdown_wait_loop_s": 0.2, "graceful_shutdown_timeout_s": 5.0}


@dataclass(frozen=True)
class Failure:
    """A request the family could not answer: the HTTP status and a message safe to return."""

    status: int
    message: str


def _items(inputs: Tensors) -> int:
    """How many items a request carries, for ``@serve.batch``'s batch size."""
    first = next(iter(inputs.values()), None)
    return len(first) if first is not None and first.ndim else 1


@serve.deployment(max_ongoing_requests=64)
class ModelFamily:
    """The models of one family in a replica; ``infer`` answers one OIP request's tensors."""

    def __init__(self, family: str, options: ServeOptions) -> None:
        self.family = family
        self.serve_options = options
        # Before any model loads, as a gateway does: Ray sets OMP_NUM_THREADS to the actor's num_cpus,
        # which torch would follow, while onnxruntime takes INFERENCE_THREADS; one policy for both.
        apply_thread_policy(options.threads())
        self.registry = ModelRegistry(options.device)
        batch = BatchConfig(max_batch_size=options.max_batch_size, max_wait_ms=options.batch_wait_ms)
        self._runners: dict[str, ServedRunner] = {}
        for name in FAMILIES[family]:
            self.registry.register(name, self._remembered(name), batch=batch)
        # One thread per model for @serve.batch's calls (the registry loads on its own thread).
        self._threads = {
            name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lumi-serve-{name}")
            for name in FAMILIES[family]
        }
        # One @serve.batch queue per model, so that the models of a post run at once, each on its
        # thread, as they do in a gateway (one queue for the family ran them one after the other).
        self._batched = {name: self._batched_calls(name) for name in FAMILIES[family]}
        self._batch_size = Histogram(
            "lumi_served_batch_size",
            description="Items per model call in the inference service.",
            boundaries=[1, 2, 4, 8, 16, 32, 64],
            tag_keys=("model",),
        )

    def _remembered(self, name: str) -> Callable[[Device], ServedRunner]:
        build = served_factory(name, self.serve_options)

        def factory(device: Device) -> ServedRunner:
            runner = self._runners[name] = build(device)
            return runner

        return factory

    async def ready(self, model: str) -> Failure | None:
        """None when ``model`` is loaded (loading it now if needed), else why it cannot be (503)."""
        try:
            await self.registry.get(model)
        except ModelUnavailable as error:
            return Failure(503, error.reason)
        return None

    def alive(self) -> bool:
        return True

    def batch_sizes(self) -> dict[str, list[int]]:
        """The sizes of the recent model calls of this replica, by model."""
        return {name: list(runner.batch_sizes) for name, runner in self._runners.items()}

    async def infer(self, model: str, inputs: Tensors) -> Tensors | Failure:
        if self.serve_options.batching == "lumi":
            return await self._infer_through_batcher(model, inputs)
        batched = self._batched.get(model)
        if batched is None:
            return Failure(404, f"model {model!r} is not served by {self.family}")
        return await batched(inputs)

    def _batched_calls(self, model: str) -> Callable[[Tensors], Awaitable[Tensors | Failure]]:
        """``model``'s own ``@serve.batch`` queue, sized in items: one model call per batch."""

        async def run_batch(requests: list[Tensors]) -> list[Tensors | Failure]:
            return await self._run(model, requests)

        # Serve tags its batch metrics (ray_serve_actual_batch_size, ...) with the function's name.
        run_batch.__name__ = run_batch.__qualname__ = f"infer_{model}"
        batched = serve.batch(
            max_batch_size=self.serve_options.max_batch_size,
            batch_wait_timeout_s=self.serve_options.batch_wait_ms / 1000.0,
            batch_size_fn=lambda batch: sum(map(_items, batch)),
        )(run_batch)
        return cast(Callable[[Tensors], Awaitable[Tensors | Failure]], batched)

    async def _run(self, model: str, requests: Sequence[Tensors]) -> list[Tensors | Failure]:
        """One model call for the items of every request that could be read."""
        codec = CODECS[model]
        try:
            handle = await self.registry.get(model)
        except ModelUnavailable as error:
            return [Failure(503, f"model {model!r} is unavailable: {error.reason}")] * len(requests)
        outcomes: list[Tensors | Failure] = []
        readable: list[tuple[int, list[Any]]] = []
        for index, inputs in enumerate(requests):
            try:
                readable.append((index, codec.split_items(inputs)))
                outcomes.append({})
            except OipError as error:
                outcomes.append(Failure(400, str(error)))
        flat = [item for _, items in readable for item in items]
        if not flat:
            return outcomes
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._threads[model], handle.runner.predict_batch, flat)
        except OipError as error:
            return [Failure(400, str(error)) if isinstance(o, dict) else o for o in outcomes]
        except Exception as error:
            log.exception("model %r failed on a batch of %d", model, len(flat))
            return [
                Failure(500, f"model {model!r} failed: {error}") if isinstance(o, dict) else o
                for o in outcomes
            ]
        self._batch_size.observe(len(flat), tags={"model": model})
        start = 0
        for index, items in readable:
            outcomes[index] = codec.encode_results(results[start : start + len(items)])
            start += len(items)
        return outcomes

    async def _infer_through_batcher(self, model: str, inputs: Tensors) -> Tensors | Failure:
        try:
            handle = await self.registry.get(model)
        except ModelUnavailable as error:
            return Failure(503, f"model {model!r} is unavailable: {error.reason}")
        return await predict_through_batcher(model, handle, CODECS[model], inputs)


async def predict_through_batcher(
    model: str, handle: ModelHandle[Any, Any], codec: Codec[Any, Any, Any], inputs: Tensors
) -> Tensors | Failure:
    """One request's items through the model's ``DynamicBatcher`` (``batching="lumi"``), with the
    outcome a family answers: the output tensors, or the failure (503, 400 or 500) with its message."""
    try:
        items = codec.split_items(inputs)
        results = await asyncio.gather(*(handle.predict(item) for item in items))
    except ModelUnavailable as error:
        return Failure(503, f"model {model!r} is unavailable: {error.reason}")
    except OipError as error:
        return Failure(400, str(error))
    except Exception as error:
        log.exception("model %r failed", model)
        return Failure(500, f"model {model!r} failed: {error}")
    return codec.encode_results(results)


@serve.deployment(max_ongoing_requests=256)
class OipIngress:
    """HTTP in the Open Inference Protocol, routed to the family deployments by model name."""

    def __init__(self, **families: DeploymentHandle[Any]) -> None:
        self.families = families

    async def __call__(self, request: Request) -> Response:
        parts = [part for part in request.url.path.split("/") if part]
        # Under a route prefix (several apps on one proxy) the OIP path starts at "v2".
        if "v2" in parts:
            parts = parts[parts.index("v2") :]
        try:
            return await self._route(request, parts)
        except OipError as error:
            return _error(400, str(error))

    async def _route(self, request: Request, parts: list[str]) -> Response:
        method = request.method
        if parts == ["v2"] and method == "GET":
            return JSONResponse({"name": "lumi", "extensions": ["binary_tensor_data"]})
        if parts == ["v2", "health", "live"]:
            return Response(status_code=200)
        if parts == ["v2", "health", "ready"]:
            return await self._ready()
        if parts == ["v2", "debug", "batches"]:
            sizes: dict[str, list[int]] = {}
            for handle in self.families.values():
                sizes.update(await handle.batch_sizes.remote())
            return JSONResponse(sizes)
        if len(parts) >= 3 and parts[:2] == ["v2", "models"]:
            model, rest = parts[2], parts[3:]
            family = self.families.get(_family_of(model))
            if family is None:
                served = ", ".join(sorted(m for m in FAMILY_OF if FAMILY_OF[m] in self.families))
                if CLASSIFIER_FAMILY in self.families:
                    served += ", classifier-<id>"
                return _error(404, f"model {model!r} is not served here (served: {served})")
            if rest == [] and method == "GET":
                return JSONResponse({"name": model, "platform": "lumi", "versions": ["1"]})
            if rest == ["ready"]:
                failure = await family.ready.remote(model)
                return (
                    Response(status_code=200) if failure is None else _error(failure.status, failure.message)
                )
            if rest == ["infer"] and method == "POST":
                return await self._infer(request, model, family)
        return _error(404, f"no such endpoint: {method} {request.url.path}")

    async def _ready(self) -> Response:
        """200 when a replica of every family answers (its models load on their first request)."""
        missing: list[str] = []
        for family, handle in self.families.items():
            try:
                async with asyncio.timeout(_READY_TIMEOUT_S):
                    await handle.alive.remote()
            except Exception:
                missing.append(family)
        if missing:
            return _error(503, f"no replica of {', '.join(missing)} answered within {_READY_TIMEOUT_S:g} s")
        return Response(status_code=200)

    async def _infer(self, request: Request, model: str, family: DeploymentHandle[Any]) -> Response:
        body = await _read_capped(request)
        decoded = decode_request(body, request.headers.get(HEADER_LENGTH))
        outcome = await family.infer.remote(model, decoded.inputs)
        if isinstance(outcome, Failure):
            return _error(outcome.status, outcome.message)
        outputs = {
            name: array for name, array in outcome.items() if not decoded.outputs or name in decoded.outputs
        }
        content, headers = encode_response(
            model, outputs, request_id=decoded.id, binary=decoded.binary_outputs
        )
        return Response(content, headers=headers)


async def _read_capped(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise OipError(f"the request is {declared} bytes, more than the {MAX_REQUEST_BYTES} accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise OipError(f"the request is more than the {MAX_REQUEST_BYTES} bytes accepted")
        chunks.append(chunk)
    return b"".join(chunks)


def _family_of(model: str) -> str:
    return CLASSIFIER_FAMILY if is_classifier_model(model) else FAMILY_OF.get(model, "")


def _error(status: int, message: str) -> Response:
    return Response(encode_error(message), status_code=status, media_type="application/json")


@dataclass(frozen=True)
class FamilyResources:
    replicas: int = 1
    num_cpus: float = 1.0
    num_gpus: float = 0.0


def build_app(
    options: ServeOptions,
    *,
    families: Sequence[str] = tuple(FAMILIES),
    resources: dict[str, FamilyResources] | None = None,
    classifier_source: Callable[[], Any] | None = None,
) -> serve.Application:
    """The application ``serve.run`` deploys: the ingress and one deployment per family.

    The ``classifiers`` family needs ``classifier_source``, a picklable callable that builds the
    family's ``ClassifierSource`` in each replica (``inference.serving.classifiers``)."""
    known = (*FAMILIES, CLASSIFIER_FAMILY)
    unknown = set(families) - set(known)
    if unknown:
        raise ValueError(f"unknown model families {sorted(unknown)}; known: {', '.join(known)}")
    resources = resources or {}
    bound: dict[str, Any] = {}
    for family in families:
        share = resources.get(family, FamilyResources())
        if family == CLASSIFIER_FAMILY:
            # Imported here: that module's deployment answers with this module's Failure.
            from inference.serving.classifiers import bind_classifier_family

            bound[family] = bind_classifier_family(options, classifier_source, share)
            continue
        bound[family] = (
            cast(Any, ModelFamily)
            .options(
                name=f"lumi-{family}",
                num_replicas=share.replicas,
                ray_actor_options={"num_cpus": share.num_cpus, "num_gpus": share.num_gpus},
                **_PROMPT_SHUTDOWN,
            )
            .bind(family, options)
        )
    ingress = cast(Any, OipIngress).options(
        name="lumi-ingress", ray_actor_options={"num_cpus": 0}, **_PROMPT_SHUTDOWN
    )
    return cast(serve.Application, ingress.bind(**bound))
