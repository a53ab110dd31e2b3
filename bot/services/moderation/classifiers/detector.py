"""Custom image classifiers in moderation: the detector that scores them for every checked image.

Registrations (`lumi models add-classifier`) are kept by `classifier_catalog`; this module turns them into
models of the shared registry, and their outputs into category scores. With INFERENCE_URL set, a
classifier's model is a remote runner of the inference service's ``classifiers`` family: the same
batches and scores, the model file loaded there instead of here. `ClassifierDetector` is an
`ExtraDetector`, so the scores meet the guild's policy like those of the built-in models, in the same
check; categories of the classifiers' own come with their rules (`DefinesCategories`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from bot.services.moderation.classifiers.catalog import (
    REGISTRY_FILE,
    ClassifierCatalog,
    classifier_catalog,
    classifier_catalog_for,
)
from bot.services.moderation.classifiers.checks import verify_classifier
from bot.services.moderation.classifiers.entries import RegisteredClassifier
from bot.services.moderation.classifiers.registry_store import ClassifierFilesError
from bot.services.moderation.classifiers.served import served_spec
from bot.services.moderation.detector_frames import DetectorFrames
from bot.services.moderation.policy import CategoryRule
from inference.batcher import BatcherClosed, QueueFull
from inference.classifier import ClassifierInput, ClassScores, KerasClassifierRunner
from inference.device import Device
from inference.images import DecodedImage
from inference.registry import BatchConfig, ModelKey, ModelRegistry, ModelUnavailable
from inference.runners.base import Runner

# The registration names (catalog, entries, checks) are re-exported: callers import the feature from here.
__all__ = [
    "REGISTRY_FILE",
    "ClassifierCatalog",
    "ClassifierDetector",
    "RegisteredClassifier",
    "classifier_catalog",
    "classifier_catalog_for",
    "verify_classifier",
]

log = logging.getLogger(__name__)

# A classifier that stays unavailable for the same reason is reported again after this long.
REPORT_INTERVAL_S: Final = 60.0


class ClassifierDetector:
    """Scores every image with the classifiers that apply to its server, through the model registry.

    Each classifier is a model of its own in the registry (``classifier-<id>``): loaded on first use on
    the registry's device, fed by its own batcher, so frames of concurrent posts share batches. A frame's
    score is the positive class's probability; an image scores its worst frame, and a category the highest
    of its classifiers. A classifier that cannot load, or whose inference service does not answer, is
    left out (the registry retries it later, the service's client after its circuit's pause), with one
    warning per reason and interval, not one per image.
    """

    name = "custom-classifiers"

    def __init__(
        self, catalog: ClassifierCatalog, registry: ModelRegistry, *, batch: BatchConfig | None = None
    ) -> None:
        self.catalog = catalog
        self.registry = registry
        self.batch = batch or BatchConfig(max_batch_size=16, max_wait_ms=10.0)
        self._registered: dict[str, RegisteredClassifier] = {}
        # The reason and time of each classifier's last warning: one per reason and interval, not per image.
        self._reported_failures: dict[str, tuple[str, float]] = {}
        self._sync_lock = asyncio.Lock()

    async def scores(
        self, data: bytes, frames: DetectorFrames, *, guild_id: int | None = None
    ) -> Mapping[str, float]:
        everything = await self.catalog.current()
        await self._sync(everything)
        active = [entry for entry in everything if entry.applies_to(guild_id)]
        if not active:
            return {}
        decoded = await frames.get()
        results = await asyncio.gather(*(self._score(entry, decoded) for entry in active))
        combined: dict[str, float] = {}
        for entry, score in zip(active, results, strict=True):
            if score is not None:
                combined[entry.category] = max(score, combined.get(entry.category, 0.0))
        return combined

    def category_rules(self, guild_id: int | None) -> Mapping[str, CategoryRule]:
        rules: dict[str, CategoryRule] = {}
        for entry in self.catalog.cached:
            rule = entry.rule()
            if rule is not None and entry.applies_to(guild_id):
                rules.setdefault(entry.category, rule)
        return rules

    def unavailable(self) -> dict[int, str]:
        """Classifiers whose model failed to load at its last attempt, by id, with the reason."""
        failed = {status.name: status.error for status in self.registry.snapshot() if status.error}
        return {entry.id: failed[key] for key, entry in self._registered.items() if key in failed}

    async def _score(self, entry: RegisteredClassifier, decoded: DecodedImage) -> float | None:
        key = ModelKey[ClassifierInput, ClassScores](entry.model_key)
        try:
            handle = await self.registry.get(key)
            outputs = await asyncio.gather(*(handle.predict(frame) for frame in decoded.frames))
        except ModelUnavailable as error:
            self._report(entry, error.reason)
            return None
        except (QueueFull, BatcherClosed) as error:
            log.warning("custom classifier #%s (%s) left out: %s", entry.id, entry.category, error)
            return None
        except Exception as error:
            # The model itself failed on this image (or the service's model did: a 500): this classifier
            # is left out of this image's check, the other classifiers still score it.
            self._report(entry, f"it failed on this image ({type(error).__name__}: {error})"[:500])
            return None
        self._reported_failures.pop(entry.model_key, None)
        return max(output.positive for output in outputs)

    def _report(self, entry: RegisteredClassifier, reason: str) -> None:
        last = self._reported_failures.get(entry.model_key)
        now = time.monotonic()
        if last is not None and last[0] == reason and now - last[1] < REPORT_INTERVAL_S:
            return
        self._reported_failures[entry.model_key] = (reason, now)
        log.warning(
            "custom classifier #%s (%s) left out: model %r is unavailable: %s",
            entry.id,
            entry.category,
            entry.model_key,
            reason,
        )

    async def _sync(self, entries: list[RegisteredClassifier]) -> None:
        """Register new classifiers in the model registry and unload removed ones."""
        wanted = {entry.model_key: entry for entry in entries}
        if wanted.keys() == self._registered.keys():
            return
        async with self._sync_lock:
            for key in [key for key in self._registered if key not in wanted]:
                await self.registry.unregister(key)
                await asyncio.to_thread(self.catalog.store.forget_copy, self._registered.pop(key))
                self._reported_failures.pop(key, None)
                log.info("custom classifier %s unloaded (no longer registered)", key)
            for key, entry in wanted.items():
                if key not in self._registered and not self.registry.is_registered(key):
                    self._register(entry)
                self._registered[key] = entry

    def _register(self, entry: RegisteredClassifier) -> None:
        remote = self.registry.remote
        if remote is not None and remote.classifiers:
            # The device is the service's; "cpu" keeps this process from probing for CUDA.
            factory: Callable[[Device], Runner[Any, Any]] = remote.classifier_factory(served_spec(entry))
            self.registry.register(entry.model_key, factory, batch=self.batch, device="cpu")
            return
        self.registry.register(entry.model_key, self._factory(entry), batch=self.batch)

    def _factory(self, entry: RegisteredClassifier) -> Callable[[Device], KerasClassifierRunner]:
        def build(device: Device) -> KerasClassifierRunner:
            return _RegisteredRunner(self.catalog, entry, device)

        return build

    async def close(self) -> None:
        """The registry unloads the models; the catalog lets go of its store."""
        await asyncio.to_thread(self.catalog.close)


class _RegisteredRunner(KerasClassifierRunner):
    """A registered classifier's runner: its folder is found (fetched and checked, from a remote
    registry) when it loads, on the model's thread, and files that are not the registered ones make the
    classifier unavailable with the store's message."""

    def __init__(self, catalog: ClassifierCatalog, entry: RegisteredClassifier, device: Device) -> None:
        super().__init__(catalog.root / entry.folder, device, name=entry.model_key)
        self._catalog = catalog
        self._entry = entry

    def load(self) -> None:
        try:
            self.path = self._catalog.folder_of(self._entry)
        except ClassifierFilesError as error:
            raise ModelUnavailable(self.name, str(error)) from None
        except OSError as error:
            raise ModelUnavailable(self.name, f"its files cannot be fetched: {error}") from None
        super().load()
