"""The classifier registry as the inference service reads it: the registrations of the store the
gateways share, each model fetched into the service's own cache and checked against the registration
(its blobs' SHA-256 in a blob store, the model file's digest before Keras loads it), a removed one's
copy dropped. Real stores (a folder, moto's S3) and the real pattern classifier."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.services.moderation.classifiers.blob_registry import BlobRegistryStore
from bot.services.moderation.classifiers.catalog import ClassifierCatalog, classifier_catalog
from bot.services.moderation.classifiers.served import ServedClassifiers, ServedClassifierSource, served_spec
from inference.registry import ModelUnavailable
from storage.blob_stores.s3 import S3BlobStore
from tests.conftest import make_settings
from tests.fakes.blob_emulators import MotoS3


@pytest.fixture
async def s3_catalogs(moto_s3: MotoS3, tmp_path: Path) -> AsyncIterator[tuple[ClassifierCatalog, ...]]:
    """The command line's catalog and the service's, on one registry in S3, each with its own cache."""
    bucket = f"lumi-served-{secrets.token_hex(4)}"

    def open_store() -> S3BlobStore:
        return moto_s3.store(bucket, "lumi")

    store = open_store()
    await store.create_bucket()
    await store.close()
    catalogs = tuple(
        ClassifierCatalog(
            BlobRegistryStore(open_store, tmp_path / name / "classifiers-cache", where=f"s3://{bucket}"),
            refresh_s=60.0,
        )
        for name in ("command-line", "service")
    )
    yield catalogs
    for catalog in catalogs:
        await asyncio.to_thread(catalog.close)


async def test_the_service_fetches_checks_and_forgets_blob_store_models(
    s3_catalogs: tuple[ClassifierCatalog, ClassifierCatalog], pattern_classifier: Path
) -> None:
    command_line, service_catalog = s3_catalogs
    served = ServedClassifiers(service_catalog)
    assert await served.registrations() == {}
    entry = await asyncio.to_thread(command_line.add, pattern_classifier, category="violence", verify=None)
    assert await served.registrations() == {}  # not looked at again yet (refresh_s)
    registrations = await served.registrations(fresh=True)
    assert registrations == {"classifier-1": served_spec(entry)}
    assert registrations["classifier-1"].input_size == (64, 64)

    folder = await asyncio.to_thread(served.model_folder, "classifier-1")
    assert folder == service_catalog.root / "1" and (folder / "model.keras").is_file()
    assert not (command_line.root / "1").exists()  # the service's own copy

    await asyncio.to_thread(command_line.remove, entry.id)
    assert await served.registrations(fresh=True) == {}
    await asyncio.to_thread(served.forget, "classifier-1")
    assert not folder.exists()
    with pytest.raises(ModelUnavailable, match=r"not registered in classifiers/registry\.json in s3://"):
        served.model_folder("classifier-1")


async def test_the_service_loads_only_the_registered_model_file(
    tmp_path: Path, pattern_classifier: Path
) -> None:
    pytest.importorskip("ray", reason="Ray Serve is not installed (the serve extra)")
    from inference.serving.classifiers import _SourcedClassifierRunner

    data_dir = tmp_path / "data"
    entry = classifier_catalog(data_dir).add(pattern_classifier, category="violence", verify=None)
    source = ServedClassifierSource(make_settings(tmp_path, data_dir=data_dir))()
    spec = (await source.registrations())["classifier-1"]

    runner = _SourcedClassifierRunner(source, spec, "cpu")
    await asyncio.to_thread(runner.load)
    assert runner.metadata.positive_class == "stripes"
    runner.close()

    model = data_dir / "classifiers" / entry.folder / "model.keras"
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(
        ModelUnavailable, match=r"not the registered [0-9a-f]{12}… \(replaced after registration\)"
    ):
        await asyncio.to_thread(_SourcedClassifierRunner(source, spec, "cpu").load)
    source.close()
