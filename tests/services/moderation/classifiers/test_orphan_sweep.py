"""Classifier files in the blob store that no registration names (a registration whose registry write
failed, a removal whose delete failed) are swept once they are older than the grace period, by one
process of the deployment; the registered ones and an upload in progress stay. On the folder blob store
and on Azure Blob (Azurite), with real models.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import pytest

from bot.errors import UserFacingError
from bot.services.moderation.classifiers.blob_registry import PREFIX, BlobRegistryStore, classifier_file_sweep
from bot.services.moderation.classifiers.catalog import ClassifierCatalog
from bot.services.moderation.classifiers.entries import RegisteredClassifier
from bot.services.moderation.classifiers.orphans import ClassifierFileSweep, UnreadableRegistry
from storage.blob_stores import LocalBlobStore
from storage.blob_stores.azure import AzureBlobStore
from storage.blobs import BlobStore, BlobStoreUnavailable
from storage.db import Database, default_sqlite_url
from tests.fakes.blob_emulators import Azurite
from tests.fakes.databases import open_database

GUILD = 333
# Azurite stamps blobs to the second: files this much apart are told apart by any store.
APART_S = 2.5


class StoreThatStopsAnswering(BlobRegistryStore):
    """The registry's store, whose writes or deletes fail from the moment a test says so (a store that
    stopped answering half way through a command)."""

    failing_writes = False
    failing_deletes = False

    def write(self, data: bytes, *, version: str | None) -> None:
        if self.failing_writes:
            raise BlobStoreUnavailable(f"{self.where}: cannot write the registry: not answering")
        super().write(data, version=version)

    def remove_files(self, entry: RegisteredClassifier) -> None:
        if self.failing_deletes:
            raise BlobStoreUnavailable(f"{self.where}: cannot delete {entry.folder}: not answering")
        super().remove_files(entry)


@pytest.fixture(params=["folder", "azure"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], BlobStore]:
    """Opens a new client on this test's blob store: the folder store or an Azurite container."""
    if request.param == "folder":
        return partial(LocalBlobStore, tmp_path / "blobs")
    azurite: Azurite = request.getfixturevalue("azurite")
    container = f"lumi-orphans-{secrets.token_hex(4)}"
    azure = AzureBlobStore(azurite.connection_string, container)
    await azure.create_container()
    await azure.close()
    return partial(AzureBlobStore, azurite.connection_string, container)


@pytest.fixture
async def registry(
    open_store: Callable[[], BlobStore], tmp_path: Path
) -> AsyncIterator[StoreThatStopsAnswering]:
    store = StoreThatStopsAnswering(open_store, tmp_path / "cache", where="the test's store")
    try:
        yield store
    finally:
        store.close()


async def folders_in(open_store: Callable[[], BlobStore]) -> set[str]:
    store = open_store()
    try:
        return {
            blob.key.split("/")[1]
            for blob in await store.list_blobs(f"{PREFIX}/")
            if blob.key.count("/") == 2
        }
    finally:
        await store.close()


async def put_file(open_store: Callable[[], BlobStore], key: str) -> None:
    store = open_store()
    try:
        await store.put(key, b"half of an upload")
    finally:
        await store.close()


async def test_folders_no_registration_names_are_swept_once_past_the_grace_period(
    registry: StoreThatStopsAnswering,
    open_store: Callable[[], BlobStore],
    pattern_classifier: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    catalog = ClassifierCatalog(registry, refresh_s=0.0)
    kept = await asyncio.to_thread(catalog.add, pattern_classifier, category="weapons", verify=None)
    removed = await asyncio.to_thread(
        catalog.add, pattern_classifier, category="violence", guild_id=GUILD, verify=None
    )
    # A removal whose delete failed: the registry no longer names the folder, which stays.
    registry.failing_deletes = True
    await asyncio.to_thread(catalog.remove, removed.id)
    # A registration whose registry write failed after its upload, and whose undo could not delete.
    registry.failing_writes = True
    with pytest.raises(UserFacingError):
        await asyncio.to_thread(catalog.add, pattern_classifier, category="gore_custom", verify=None)
    registry.failing_writes = registry.failing_deletes = False
    left = await folders_in(open_store) - {kept.folder, removed.folder}
    (unregistered,) = left
    assert unregistered.startswith("3-gore_custom-")

    # Within the grace period nothing goes.
    assert await asyncio.to_thread(registry.sweep_orphans) == []
    await asyncio.sleep(APART_S)
    # An upload in progress: its first file is newer than the grace period below.
    in_progress = "4-weapons-0123abcd"
    await put_file(open_store, f"{PREFIX}/{in_progress}/metadata.json")

    with caplog.at_level(logging.INFO, logger="bot.services.moderation.classifiers.orphans"):
        swept = await asyncio.to_thread(registry.sweep_orphans, older_than_s=APART_S / 2)
    assert sorted(swept) == sorted([removed.folder, unregistered])
    assert await folders_in(open_store) == {kept.folder, in_progress}
    assert f"removed {PREFIX}/{removed.folder}/ (2 file(s)" in caplog.text
    # The registration kept still loads, in another process too.
    other = BlobRegistryStore(
        open_store, registry.cache_root.parent / "other-cache", where="the test's store"
    )
    try:
        folder = await asyncio.to_thread(ClassifierCatalog(other).folder_of, kept)
        assert sorted(path.name for path in folder.iterdir()) == ["metadata.json", "model.keras"]
    finally:
        other.close()


async def test_a_registry_that_cannot_be_read_stops_the_sweep(
    registry: StoreThatStopsAnswering, open_store: Callable[[], BlobStore]
) -> None:
    await put_file(open_store, f"{PREFIX}/1-weapons-0123abcd/model.keras")
    await put_file(open_store, f"{PREFIX}/registry.json")  # not a registry document
    await asyncio.sleep(APART_S)
    with pytest.raises(UnreadableRegistry, match="registry cannot be parsed"):
        await asyncio.to_thread(registry.sweep_orphans, older_than_s=APART_S / 2)
    assert await folders_in(open_store) == {"1-weapons-0123abcd"}


@pytest.mark.postgres
@pytest.mark.parametrize("open_store", ["folder"], indirect=True)
async def test_one_process_of_the_deployment_sweeps(
    postgres_session_url: str, open_store: Callable[[], BlobStore], tmp_path: Path
) -> None:
    await put_file(open_store, f"{PREFIX}/7-weapons-0123abcd/model.keras")
    await asyncio.sleep(APART_S)
    stores: list[BlobRegistryStore] = []
    sweeps: list[ClassifierFileSweep] = []
    async with (
        open_database(postgres_session_url, migrated=False) as a,
        open_database(postgres_session_url, migrated=False) as b,
    ):
        for index, database in enumerate((a, b)):
            store = BlobRegistryStore(open_store, tmp_path / f"cache-{index}", where="the test's store")
            stores.append(store)
            sweep = classifier_file_sweep(store, database, interval_s=0.05)
            assert isinstance(sweep, ClassifierFileSweep)
            sweep.older_than_s = APART_S / 2
            sweeps.append(sweep)
        try:
            for sweep in sweeps:
                sweep.start()
            async with asyncio.timeout(20):
                while max(sweep.runs for sweep in sweeps) < 3:  # noqa: ASYNC110 - the loops signal nothing
                    await asyncio.sleep(0.05)
            assert min(sweep.runs for sweep in sweeps) == 0
            assert await folders_in(open_store) == set()
        finally:
            await asyncio.gather(*(sweep.stop() for sweep in sweeps))
            for store in stores:
                store.close()


def test_a_registry_in_a_folder_has_no_sweep(tmp_path: Path) -> None:
    catalog = ClassifierCatalog(tmp_path / "classifiers")
    database = Database(default_sqlite_url(tmp_path / "db"))
    assert classifier_file_sweep(catalog.store, database, interval_s=60) is None
