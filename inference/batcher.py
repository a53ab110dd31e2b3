"""Dynamic batching: concurrent ``submit`` calls are grouped into one model call on a worker thread.

The first queued item opens a wait window of ``max_wait_ms``; the batch closes when it holds
``max_batch_size`` items or the window ends. While a batch runs, new items queue up and form the next
batch, so under load batches fill without waiting. Callers that gave up (cancelled) are dropped before
the model sees their item.

One bad item must not cost the others their answers: when the model fails on a batch of several items,
each item is run again on its own, so the item that breaks the model gets the error and every other
item its result. Only a model that breaks its own contract (a result list of the wrong length) fails
the whole batch at once, since running its items again would not make that model trustworthy, and so
does a model that is unavailable (``ModelUnavailable``: the inference service is down), which is no
item's fault and is logged where it is detected. Every caller hears something: a result, its item's
error, or ``BatcherClosed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from inference import metrics
from inference.runners.base import ModelUnavailable

__all__ = ["BatchSizeMismatch", "BatcherClosed", "DynamicBatcher", "QueueFull"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class BatcherClosed(RuntimeError):
    """The batcher was closed before this item could run."""


class QueueFull(RuntimeError):
    """The queue stayed full for longer than the caller was willing to wait."""


class BatchSizeMismatch(RuntimeError):
    """The model returned a different number of results than it was given items."""


@dataclass(eq=False)
class _Request(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    enqueued_at: float = field(default_factory=time.perf_counter)


class DynamicBatcher(Generic[T, R]):
    """Group concurrent requests into batches for ``predict_batch``, run on a single worker thread.

    ``predict_batch`` must return a list with one result per item, in order. When ``executor`` is not
    given the batcher owns a single-thread executor and shuts it down in ``close``. ``max_queue`` bounds
    the items waiting for a batch; ``submit`` then waits for space (up to ``queue_timeout`` seconds,
    ``None`` = no limit) and raises ``QueueFull`` past that.
    """

    def __init__(
        self,
        name: str,
        predict_batch: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int = 16,
        max_wait_ms: float = 10.0,
        max_queue: int = 256,
        queue_timeout: float | None = None,
        executor: Executor | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must not be negative")
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self._predict_batch = predict_batch
        self._owns_executor = executor is None
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"lumi-batch-{name}"
        )
        self._pending: deque[_Request[T, R]] = deque()
        self._item_added = asyncio.Event()
        self._space_freed = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._queue_gauge = metrics.QUEUE_DEPTH.labels(model=name)
        self._batch_size_hist = metrics.BATCH_SIZE.labels(model=name)
        self._batch_seconds_hist = metrics.BATCH_SECONDS.labels(model=name)
        self._request_seconds_hist = metrics.REQUEST_SECONDS.labels(model=name)
        self._failed_batches = metrics.FAILED_BATCHES.labels(model=name)

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def closed(self) -> bool:
        return self._closed

    async def submit(self, item: T, *, queue_timeout: float | None = None) -> R:
        """Queue ``item`` and wait for its result. ``queue_timeout`` overrides the batcher's default."""
        if self._closed:
            raise BatcherClosed(f"batcher {self.name!r} is closed")
        await self._wait_for_space(self.queue_timeout if queue_timeout is None else queue_timeout)
        loop = asyncio.get_running_loop()
        request: _Request[T, R] = _Request(item, loop.create_future())
        self._pending.append(request)
        self._queue_gauge.set(len(self._pending))
        self._item_added.set()
        self._ensure_worker()
        try:
            return await request.future
        except asyncio.CancelledError:
            # Free the slot now rather than when the worker reaches the request.
            with contextlib.suppress(ValueError):
                self._pending.remove(request)
                self._queue_gauge.set(len(self._pending))
                self._space_freed.set()
            raise
        finally:
            self._request_seconds_hist.observe(time.perf_counter() - request.enqueued_at)

    async def _wait_for_space(self, limit_s: float | None) -> None:
        if len(self._pending) < self.max_queue:
            return
        try:
            async with asyncio.timeout(limit_s):
                while len(self._pending) >= self.max_queue:
                    if self._closed:
                        raise BatcherClosed(f"batcher {self.name!r} is closed")
                    self._space_freed.clear()
                    await self._space_freed.wait()
        except TimeoutError:
            raise QueueFull(
                f"model {self.name!r} is overloaded: {len(self._pending)} requests queued and no space freed "
                f"within {limit_s} s"
            ) from None
        if self._closed:
            raise BatcherClosed(f"batcher {self.name!r} is closed")

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def _run(self) -> None:
        try:
            while True:
                batch = await self._next_batch()
                if batch is None:
                    return
                if batch:
                    await self._execute(batch)
        except BaseException as exc:
            # A bug here or the loop shutting down must not leave callers waiting forever.
            self._fail_pending(BatcherClosed(f"batcher {self.name!r} stopped: {exc!r}"))
            raise

    async def _next_batch(self) -> list[_Request[T, R]] | None:
        while not self._pending:
            if self._closed:
                return None
            self._item_added.clear()
            await self._item_added.wait()
        deadline = self._pending[0].enqueued_at + self.max_wait_s
        while len(self._pending) < self.max_batch_size and not self._closed:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._item_added.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._item_added.wait()
        batch: list[_Request[T, R]] = []
        while self._pending and len(batch) < self.max_batch_size:
            request = self._pending.popleft()
            if not request.future.done():
                batch.append(request)
        self._queue_gauge.set(len(self._pending))
        self._space_freed.set()
        return batch

    async def _execute(self, batch: list[_Request[T, R]]) -> None:
        try:
            outcome = await self._run_model(batch)
            if (
                isinstance(outcome, Exception)
                and len(batch) > 1
                and not isinstance(outcome, (BatchSizeMismatch, ModelUnavailable))
            ):
                log.info(
                    "model %r: running the %d items of the failed batch one at a time", self.name, len(batch)
                )
                for request in batch:
                    if not request.future.done():
                        self._settle([request], await self._run_model([request]))
                return
            self._settle(batch, outcome)
        except BaseException:
            # The worker itself is being cancelled (loop shutdown); this batch's callers must hear it.
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(BatcherClosed(f"batcher {self.name!r} stopped mid-batch"))
            raise

    async def _run_model(self, batch: list[_Request[T, R]]) -> list[R] | Exception:
        """The model's results for ``batch``, or the exception it raised (returned, for the caller to
        decide whether to split the batch)."""
        items = [request.item for request in batch]
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            return await loop.run_in_executor(self._executor, self._call_model, items)
        except Exception as exc:
            self._failed_batches.inc()
            # An unavailable model says so once where it is detected (the registry, the service client).
            level = logging.DEBUG if isinstance(exc, ModelUnavailable) else logging.WARNING
            log.log(level, "model %r failed on a batch of %d: %r", self.name, len(items), exc)
            return exc
        finally:
            self._batch_seconds_hist.observe(time.perf_counter() - started)
            self._batch_size_hist.observe(len(items))

    def _settle(self, batch: list[_Request[T, R]], outcome: list[R] | Exception) -> None:
        """Hand every caller still waiting its result, or the batch's error."""
        if isinstance(outcome, Exception):
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(outcome)
            return
        for request, result in zip(batch, outcome, strict=True):
            if not request.future.done():
                request.future.set_result(result)

    def _call_model(self, items: list[T]) -> list[R]:
        results = self._predict_batch(items)
        if not isinstance(results, Sequence) or isinstance(results, (str, bytes)):
            raise BatchSizeMismatch(
                f"model {self.name!r} returned {type(results).__name__} "
                f"instead of a list of {len(items)} results"
            )
        if len(results) != len(items):
            raise BatchSizeMismatch(
                f"model {self.name!r} returned {len(results)} results for {len(items)} items"
            )
        return list(results)

    def _fail_pending(self, exc: BaseException) -> None:
        while self._pending:
            request = self._pending.popleft()
            if not request.future.done():
                request.future.set_exception(exc)
        self._queue_gauge.set(0)
        self._space_freed.set()

    async def close(self, *, drain: bool = True) -> None:
        """Stop accepting work; finish queued items (``drain``) or fail them with ``BatcherClosed``."""
        self._closed = True
        if not drain:
            self._fail_pending(BatcherClosed(f"batcher {self.name!r} was closed"))
        self._item_added.set()
        self._space_freed.set()
        if self._worker is not None:
            # wait() rather than awaiting the task: a worker that died must not turn close() into a raise.
            await asyncio.wait({self._worker})
        # Items can only be left if the worker died; their callers must still hear about it.
        self._fail_pending(BatcherClosed(f"batcher {self.name!r} was closed"))
        if self._owns_executor:
            self._executor.shutdown(wait=False)
