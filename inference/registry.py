"""Model registry: lazy loading, device choice and a status snapshot of every model.

Models are registered with a factory and loaded on first use: under a per-model asyncio lock with a
re-check (so concurrent first requests load once), on the model's own worker thread (loading and
inference then share one thread, which CUDA contexts and some runtimes prefer), followed by one
warm-up call. Each loaded model gets a ``DynamicBatcher`` on that same thread.

With ``remote`` (``INFERENCE_URL`` set), the models the inference service serves get remote runners
instead of their own factories: same contract, same batchers, the model itself runs in the service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from inference import metrics
from inference.batcher import DynamicBatcher
from inference.device import Device, parse_device, resolve_device
from inference.runners.base import ModelUnavailable, Runner, SupportsWarmup

if TYPE_CHECKING:
    from inference.serving.remote import RemoteModels

__all__ = [
    "BatchConfig",
    "ModelHandle",
    "ModelKey",
    "ModelRegistry",
    "ModelStatus",
    "ModelUnavailable",
    "RunnerFactory",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

RunnerFactory = Callable[[Device], Runner[T, R]]
"""Builds an unloaded runner for a device; must be cheap (the heavy work belongs in ``load``)."""


@dataclass(frozen=True)
class ModelStatus:
    name: str
    device: str
    loaded: bool
    queue_depth: int
    error: str | None = None
    # Being loaded right now (its first request, or a preload, holds the load lock).
    loading: bool = False


@dataclass(frozen=True)
class ModelKey(Generic[T, R]):
    """A model name that also carries the runner's input and output types, for typed ``get``."""

    name: str


@dataclass(frozen=True)
class BatchConfig:
    max_batch_size: int = 16
    max_wait_ms: float = 10.0
    max_queue: int = 256
    queue_timeout: float | None = 30.0


class ModelHandle(Generic[T, R]):
    """A loaded model: its runner and the batcher that feeds it."""

    def __init__(self, name: str, runner: Runner[T, R], batcher: DynamicBatcher[T, R]) -> None:
        self.name = name
        self.runner = runner
        self.batcher = batcher

    @property
    def device(self) -> str:
        return self.runner.device

    async def predict(self, item: T) -> R:
        return await self.batcher.submit(item)


class _Entry(Generic[T, R]):
    def __init__(
        self,
        name: str,
        factory: RunnerFactory[T, R],
        batch: BatchConfig,
        device: Device | None,
        preference: str,
    ) -> None:
        self.name = name
        self.factory = factory
        self.batch = batch
        self.target_device = device
        # The preference until loaded, then what the runner reports (it may fall back to the CPU).
        self.device: str = device or preference
        self.lock = asyncio.Lock()
        self.handle: ModelHandle[T, R] | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.error: ModelUnavailable | None = None
        self.failed_at = 0.0


class ModelRegistry:
    """Lazily loaded models by name. ``device`` is ``auto``, ``cpu`` or ``cuda``.

    A failed load is remembered for ``retry_after_s`` so a missing model costs one attempt, not one per
    message; after that the next ``get`` tries again (the user may have installed what was missing).
    """

    def __init__(
        self, device: str = "auto", *, retry_after_s: float = 60.0, remote: RemoteModels | None = None
    ) -> None:
        self.device = parse_device(device)
        self.remote = remote
        self.retry_after_s = retry_after_s
        self._resolved: Device | None = None
        self._resolve_lock = asyncio.Lock()
        self._entries: dict[str, _Entry[Any, Any]] = {}
        self._closed = False

    async def resolved_device(self) -> Device:
        """The device ``auto`` stands for here. Resolved once, in a thread: it may import torch."""
        async with self._resolve_lock:
            if self._resolved is not None:
                return self._resolved
            resolved = await asyncio.to_thread(resolve_device, self.device)
            self._resolved = resolved
            return resolved

    def register(
        self,
        name: str | ModelKey[T, R],
        factory: RunnerFactory[T, R],
        *,
        batch: BatchConfig | None = None,
        device: Device | None = None,
    ) -> None:
        """Register a model; ``device`` overrides the registry's choice for this model only."""
        key = name.name if isinstance(name, ModelKey) else name
        if key in self._entries:
            raise ValueError(f"model {key!r} is already registered")
        if self.remote is not None and self.remote.serves(key):
            # The device is the service's business; "cpu" keeps this process from probing for CUDA.
            factory, device = self.remote.factory(key), "cpu"
        self._entries[key] = _Entry(key, factory, batch or BatchConfig(), device, self.device)

    def registered(self) -> list[str]:
        return list(self._entries)

    async def unregister(self, name: str | ModelKey[Any, Any]) -> bool:
        """Forget a model, unloading it after its queued work; False when it was not registered.

        For models that come and go while Lumi runs (custom classifiers a moderator removes).
        """
        key = name.name if isinstance(name, ModelKey) else name
        entry = self._entries.get(key)
        if entry is None:
            return False
        async with entry.lock:
            self._entries.pop(key, None)
            handle, executor = entry.handle, entry.executor
            entry.handle, entry.executor = None, None
            if handle is not None and executor is not None:
                await handle.batcher.close()
                await _close_quietly(asyncio.get_running_loop(), executor, handle.runner)
                executor.shutdown(wait=False)
                metrics.MODEL_LOADED.labels(model=entry.name, device=entry.device).set(0)
        return True

    def is_registered(self, name: str | ModelKey[Any, Any]) -> bool:
        return (name.name if isinstance(name, ModelKey) else name) in self._entries

    @overload
    async def get(self, name: ModelKey[T, R]) -> ModelHandle[T, R]: ...

    @overload
    async def get(self, name: str) -> ModelHandle[Any, Any]: ...

    async def get(self, name: str | ModelKey[Any, Any]) -> ModelHandle[Any, Any]:
        """The loaded model, loading it on first use. Raises ``ModelUnavailable`` when it can't load."""
        key = name.name if isinstance(name, ModelKey) else name
        entry = self._entries.get(key)
        if entry is None:
            known = ", ".join(sorted(self._entries)) or "none"
            raise ModelUnavailable(key, f"no such model is registered (registered: {known})")
        if entry.handle is not None:
            return entry.handle
        async with entry.lock:
            if entry.handle is not None:
                return entry.handle
            if self._closed:
                raise ModelUnavailable(key, "the model registry is shut down")
            if self._entries.get(key) is not entry:
                raise ModelUnavailable(key, "the model was unregistered")
            if entry.error is not None and time.monotonic() - entry.failed_at < self.retry_after_s:
                raise entry.error
            entry.handle = await self._load(entry)
            return entry.handle

    async def _load(self, entry: _Entry[T, R]) -> ModelHandle[T, R]:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lumi-model-{entry.name}")
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        runner: Runner[T, R] | None = None
        try:
            runner = entry.factory(entry.target_device or await self.resolved_device())
            await loop.run_in_executor(executor, runner.load)
            if isinstance(runner, SupportsWarmup):
                inputs = cast(list[T], runner.warmup_inputs())
                if inputs:
                    await loop.run_in_executor(executor, runner.predict_batch, inputs)
        except BaseException as exc:
            if runner is not None:
                await _close_quietly(loop, executor, runner)
            executor.shutdown(wait=False)
            if isinstance(exc, Exception):
                entry.error = (
                    exc
                    if isinstance(exc, ModelUnavailable)
                    else ModelUnavailable(entry.name, f"loading failed: {exc}")
                )
                entry.failed_at = time.monotonic()
                log.error("model %r could not be loaded: %s", entry.name, entry.error.reason)
                raise entry.error from exc
            raise
        elapsed = time.perf_counter() - started
        entry.device = runner.device
        entry.executor = executor
        entry.error = None
        metrics.MODEL_LOADED.labels(model=entry.name, device=entry.device).set(1)
        metrics.MODEL_LOAD_SECONDS.labels(model=entry.name, device=entry.device).set(elapsed)
        log.info("model %r loaded on %s in %.2f s", entry.name, entry.device, elapsed)
        config = entry.batch
        batcher: DynamicBatcher[T, R] = DynamicBatcher(
            entry.name,
            runner.predict_batch,
            max_batch_size=config.max_batch_size,
            max_wait_ms=config.max_wait_ms,
            max_queue=config.max_queue,
            queue_timeout=config.queue_timeout,
            executor=executor,
        )
        return ModelHandle(entry.name, runner, batcher)

    async def preload(self, names: Sequence[str] | None = None) -> dict[str, ModelUnavailable | None]:
        """Load the given models (all by default); returns each model's error, or None when loaded."""
        outcome: dict[str, ModelUnavailable | None] = {}
        for name in names if names is not None else list(self._entries):
            try:
                await self.get(name)
                outcome[name] = None
            except ModelUnavailable as exc:
                outcome[name] = exc
        return outcome

    def snapshot(self) -> list[ModelStatus]:
        return [
            ModelStatus(
                name=entry.name,
                device=entry.device,
                loaded=entry.handle is not None,
                queue_depth=entry.handle.batcher.queue_depth if entry.handle is not None else 0,
                error=entry.error.reason if entry.error is not None else None,
                loading=entry.handle is None and entry.lock.locked(),
            )
            for entry in self._entries.values()
        ]

    async def close(self) -> None:
        """Finish queued work, then unload every model and stop its thread."""
        self._closed = True
        loop = asyncio.get_running_loop()
        for entry in self._entries.values():
            async with entry.lock:
                handle, executor = entry.handle, entry.executor
                entry.handle, entry.executor = None, None
                if handle is None or executor is None:
                    continue
                await handle.batcher.close()
                await _close_quietly(loop, executor, handle.runner)
                executor.shutdown(wait=False)
                metrics.MODEL_LOADED.labels(model=entry.name, device=entry.device).set(0)
        if self.remote is not None:
            await self.remote.close()


async def _close_quietly(
    loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor, runner: Runner[Any, Any]
) -> None:
    try:
        await loop.run_in_executor(executor, runner.close)
    except Exception:
        log.exception("closing model %r failed", runner.name)
