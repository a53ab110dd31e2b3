"""The custom classifiers in the inference service: the registry the gateways read, as the service
reads it, and each registration as both sides of the wire know it (``ClassifierSpec``).

``ServedClassifierSource`` is what `lumi serve-models` hands to the service's ``classifiers`` family: a
picklable callable, run in each replica, that opens ``classifier_catalog_for(settings)`` there (the
folder under DATA_DIR, or the blob store in distributed mode, whose copies are checked against their
SHA-256 before they load) and wraps it as the family's ``ClassifierSource``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from bot.services.moderation.classifiers.catalog import ClassifierCatalog, classifier_catalog_for
from bot.services.moderation.classifiers.checks import file_sha256
from bot.services.moderation.classifiers.entries import RegisteredClassifier
from bot.services.moderation.classifiers.registry_store import ClassifierFilesError
from inference.classifier import MetadataError, classifier_files
from inference.registry import ModelUnavailable
from inference.serving.classifier_codec import ClassifierSource, ClassifierSpec

__all__ = ["ServedClassifierSource", "ServedClassifiers", "served_spec"]


def served_spec(entry: RegisteredClassifier) -> ClassifierSpec:
    return ClassifierSpec(
        model=entry.model_key,
        sha256=entry.sha256,
        input_size=entry.input_size,
        classes=entry.classes,
        positive_class=entry.positive_class,
    )


class ServedClassifiers:
    """A ``ClassifierSource`` over a catalog: its registrations by model name, and their model folders
    (fetched and checked by the catalog's store, the model file's digest checked here)."""

    def __init__(self, catalog: ClassifierCatalog) -> None:
        self.catalog = catalog
        self._entries: dict[str, RegisteredClassifier] = {}
        self._registered: frozenset[str] = frozenset()

    @property
    def description(self) -> str:
        return self.catalog.store.description

    async def registrations(self, *, fresh: bool = False) -> Mapping[str, ClassifierSpec]:
        if fresh:
            self.catalog.invalidate()
        entries = await self.catalog.current()
        found = {entry.model_key: entry for entry in entries}
        # A removed entry is kept until forgotten: its copy is the one to drop.
        self._entries.update(found)
        self._registered = frozenset(found)
        return {model: served_spec(entry) for model, entry in found.items()}

    def model_folder(self, model: str) -> Path:
        entry = self._entry(model)
        try:
            folder = self.catalog.folder_of(entry)
            model_path, _metadata_path = classifier_files(folder)
            digest = file_sha256(model_path)
        except ClassifierFilesError as error:
            raise ModelUnavailable(model, str(error)) from None
        except MetadataError as error:
            raise ModelUnavailable(model, f"{error}; register it again") from None
        except OSError as error:
            raise ModelUnavailable(model, f"its files cannot be fetched: {error}") from None
        # A folder store's copy is loaded as it is: it may have been replaced since registration. (An entry
        # recorded without a digest is loaded as it is, as a gateway would.)
        if entry.sha256 and digest != entry.sha256:
            raise ModelUnavailable(
                model,
                f"{str(model_path)!r} has sha256 {digest[:12]}…, not the registered {entry.sha256[:12]}… "
                "(replaced after registration): register it again",
            )
        return folder

    def forget(self, model: str) -> None:
        entry = self._entries.get(model)
        if entry is None:
            return
        if model not in self._registered:
            del self._entries[model]
        # A copy is kept by id: a registration replaced under the same id is fetched again.
        self.catalog.store.forget_copy(entry)

    def close(self) -> None:
        self.catalog.close()

    def _entry(self, model: str) -> RegisteredClassifier:
        entry = self._entries.get(model)
        if entry is None:
            raise ModelUnavailable(model, f"it is not registered in {self.description}")
        return entry


@dataclass(frozen=True)
class ServedClassifierSource:
    """Opens, in the process that calls it, the classifier registry these settings name."""

    settings: Settings
    refresh_s: float = 5.0

    def __call__(self) -> ClassifierSource:
        catalog = classifier_catalog_for(self.settings)
        catalog.refresh_s = self.refresh_s
        return ServedClassifiers(catalog)
