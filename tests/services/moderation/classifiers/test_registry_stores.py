"""The classifier registry across processes: one contract on a folder and in blob stores (Azurite, moto).

Each catalog below is one "process": its own registry store (in Azurite, its own client and DATA_DIR
cache) on one shared registry. A registration by one is seen and loaded by the other; two writers racing
for one id both end up registered; a replaced or cut-short model upload, or a damaged registry, is
refused with a message while the registrations already serving keep serving. Real models throughout (the
pattern classifier flags stripes, dots are harmless).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import pytest

from bot.errors import UserFacingError
from bot.services.moderation.checker import ImageChecker
from bot.services.moderation.classifiers.blob_registry import REGISTRY_KEY, BlobRegistryStore
from bot.services.moderation.classifiers.catalog import ClassifierCatalog, classifier_catalog_for
from bot.services.moderation.classifiers.detector import ClassifierDetector
from bot.services.moderation.classifiers.entries import ClassifierFile, RegisteredClassifier
from bot.services.moderation.classifiers.local_registry import LocalRegistryStore
from inference.registry import ModelRegistry
from storage.blob_stores.azure import AzureBlobStore
from storage.blob_stores.local import LocalBlobStore
from storage.blobs import BlobStore
from tests.conftest import make_settings
from tests.fakes.blob_emulators import Azurite, MotoS3
from tests.fakes.patterns import png_bytes

GUILD = 333

MakeCatalog = Callable[..., ClassifierCatalog]


class _MeetingStore(BlobRegistryStore):
    """Holds each writer's first attempt, after it read the registry and uploaded its files, until the
    other writer got there too: both then write against the same version, a lost race every time."""

    def __init__(self, *args: object, meeting: threading.Barrier, **options: object) -> None:
        super().__init__(*args, **options)  # type: ignore[arg-type]
        self.meeting = meeting
        self.attempts = 0

    def add_files(
        self, staging: Path, *, classifier_id: int, category: str
    ) -> tuple[str, tuple[ClassifierFile, ...]]:
        result = super().add_files(staging, classifier_id=classifier_id, category=category)
        self.attempts += 1
        if self.attempts == 1:
            self.meeting.wait(timeout=60)
        return result


@pytest.fixture(params=["folder", "azure", "s3"])
async def make_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeCatalog]:
    """``make_catalog(process)``: that process's catalog on the one registry of this test."""
    catalogs: list[ClassifierCatalog] = []
    container = f"lumi-classifiers-{secrets.token_hex(4)}"
    open_store: Callable[[], BlobStore] | None = None
    if request.param == "azure":
        azurite: Azurite = request.getfixturevalue("azurite")
        open_store = partial(AzureBlobStore, azurite.connection_string, container)
        azure = AzureBlobStore(azurite.connection_string, container)
        await azure.create_container()
        await azure.close()
    elif request.param == "s3":
        moto: MotoS3 = request.getfixturevalue("moto_s3")
        open_store = partial(moto.store, container, "lumi")
        s3 = moto.store(container, "lumi")
        await s3.create_bucket()
        await s3.close()

    def make(process: str, *, meeting: threading.Barrier | None = None) -> ClassifierCatalog:
        if open_store is None:
            # Processes sharing DATA_DIR share the folder.
            catalog = ClassifierCatalog(tmp_path / "shared" / "classifiers", refresh_s=0.0)
        else:
            where = f"{request.param}://{container}"
            cache = tmp_path / process / "classifiers-cache"
            store = (
                BlobRegistryStore(open_store, cache, where=where)
                if meeting is None
                else _MeetingStore(open_store, cache, meeting=meeting, where=where)
            )
            catalog = ClassifierCatalog(store, refresh_s=0.0)
        catalogs.append(catalog)
        return catalog

    make.kind = request.param  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        for catalog in catalogs:
            catalog.close()


@pytest.fixture
async def serving() -> AsyncIterator[Callable[[ClassifierCatalog], ImageChecker]]:
    """``serving(catalog)``: an image checker scoring that catalog's classifiers, as the bot's does."""
    opened: list[tuple[ImageChecker, ModelRegistry]] = []

    def start(catalog: ClassifierCatalog) -> ImageChecker:
        registry = ModelRegistry(device="cpu")
        checker = ImageChecker(registry, extra_detectors=[ClassifierDetector(catalog, registry)])
        opened.append((checker, registry))
        return checker

    try:
        yield start
    finally:
        for checker, registry in opened:
            await checker.close()
            await registry.close()


def _detector(checker: ImageChecker) -> ClassifierDetector:
    found = [d for d in checker.extra_detectors if isinstance(d, ClassifierDetector)]
    return found[0]


async def test_a_registration_by_one_process_is_seen_and_loaded_by_another(
    make_catalog: MakeCatalog, serving: Callable[[ClassifierCatalog], ImageChecker], pattern_classifier: Path
) -> None:
    command_line, bot = make_catalog("a"), make_catalog("b")
    checker = serving(bot)
    striped = png_bytes("stripes", seed=41)
    assert "weapons" not in (await checker.check_image(striped, guild_id=GUILD)).scores

    entry = await asyncio.to_thread(
        command_line.add, pattern_classifier, category="weapons", review=0.4, verify=None
    )
    assert [f.name for f in entry.files] == ["metadata.json", "model.keras"]
    assert all(len(f.sha256) == 64 and f.size > 0 for f in entry.files)
    verdict = await checker.check_image(striped, guild_id=GUILD)
    assert verdict.decision.category == "weapons" and verdict.flagged
    assert checker.registry.is_registered(entry.model_key)
    assert [e.id for e in bot.load()] == [entry.id]
    if make_catalog.kind != "folder":  # type: ignore[attr-defined]
        # The bot loaded its own copy, fetched from the blob store into its DATA_DIR.
        cached = bot.root / str(entry.id)
        assert sorted(p.name for p in cached.iterdir()) == ["metadata.json", "model.keras"]
        assert entry.folder.startswith(f"{entry.id}-weapons-")

    await asyncio.to_thread(command_line.remove, entry.id)
    gone = await checker.check_image(striped, guild_id=GUILD)
    assert "weapons" not in gone.scores and not gone.flagged
    assert not checker.registry.is_registered(entry.model_key)
    assert bot.load() == []
    if make_catalog.kind != "folder":  # type: ignore[attr-defined]
        assert not (bot.root / str(entry.id)).exists()  # the copy went with the registration


async def test_two_writers_racing_both_keep_their_registration(
    make_catalog: MakeCatalog, pattern_classifier: Path
) -> None:
    meeting = threading.Barrier(2) if make_catalog.kind != "folder" else None  # type: ignore[attr-defined]
    first, second = make_catalog("a", meeting=meeting), make_catalog("b", meeting=meeting)

    entries = await asyncio.gather(
        asyncio.to_thread(first.add, pattern_classifier, category="weapons", verify=None),
        asyncio.to_thread(
            second.add, pattern_classifier, category="gore_custom", guild_id=GUILD, verify=None
        ),
    )
    assert sorted(entry.id for entry in entries) == [1, 2]
    registered = {(e.id, e.category) for e in make_catalog("c").load()}
    assert registered == {(entry.id, entry.category) for entry in entries}
    if meeting is not None:
        # One of them lost the first compare-and-swap and registered again under the next id.
        assert sorted(store.attempts for store in (first.store, second.store)) == [1, 2]  # type: ignore[attr-defined]
    # Every registration's files are where its record says, the loser's first upload is gone.
    third = make_catalog("c")
    for entry in entries:
        folder = third.folder_of(entry)
        assert sorted(p.name for p in folder.iterdir()) == ["metadata.json", "model.keras"]


# A folder's model is this host's own copy, loaded as it is: only a remote store's copies are fetched.
@pytest.mark.parametrize("make_catalog", ["azure"], indirect=True)
async def test_a_replaced_or_cut_short_upload_is_refused_and_the_serving_one_keeps_serving(
    azurite: Azurite,
    make_catalog: MakeCatalog,
    serving: Callable[[ClassifierCatalog], ImageChecker],
    pattern_classifier: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    command_line, bot = make_catalog("a"), make_catalog("b")
    checker = serving(bot)
    striped = png_bytes("stripes", seed=43)
    serving_one = await asyncio.to_thread(
        command_line.add, pattern_classifier, category="weapons", verify=None
    )
    assert (await checker.check_image(striped, guild_id=GUILD)).decision.category == "weapons"

    replaced = await asyncio.to_thread(
        command_line.add, pattern_classifier, category="violence", guild_id=GUILD, verify=None
    )
    model = next(f for f in replaced.files if f.name == "model.keras")
    assert isinstance(command_line.store, BlobRegistryStore)
    container = command_line.store.where.removeprefix("azure://")
    raw = AzureBlobStore(azurite.connection_string, container)
    try:
        cut_short = (await raw.read(model.key))[: model.size // 2]
        await raw.put(model.key, cut_short)

        verdict = await checker.check_image(striped, guild_id=GUILD)
        assert verdict.scores["weapons"] > 0.4 and "violence" not in verdict.scores
        reason = _detector(checker).unavailable()[replaced.id]
        assert "model.keras of classifier #2" in reason and "is not the file registered" in reason
        assert f"{model.size // 2} bytes" in reason and "register it again" in reason
        assert not (bot.root / str(replaced.id)).exists()  # nothing half-fetched is kept as the copy

        # A registry document that is not one leaves the last good list in use.
        with caplog.at_level(logging.ERROR):
            await raw.put(REGISTRY_KEY, b"{ not json")
            still = await checker.check_image(striped, guild_id=GUILD)
        assert still.decision.category == "weapons"
        assert "custom classifiers not reloaded" in caplog.text and REGISTRY_KEY in caplog.text
        with pytest.raises(UserFacingError, match=f"cannot read {REGISTRY_KEY} in azure://"):
            command_line.load()
    finally:
        await raw.close()
    assert serving_one.id == 1


def test_distributed_mode_with_a_remote_blob_store_keeps_the_registry_there(tmp_path: Path) -> None:
    connection = (
        "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/a;"
    )
    shared = {"blob_store_url": "azure://lumi-files", "azure_storage_connection_string": connection}
    distributed = make_settings(
        tmp_path,
        lumi_mode="distributed",
        database_url="postgresql+asyncpg://postgres@127.0.0.1:5432/lumi",
        redis_url="redis://127.0.0.1:6379/0",
        **shared,
    )
    catalog = classifier_catalog_for(distributed)
    assert isinstance(catalog.store, BlobRegistryStore)
    assert catalog.store.description == "classifiers/registry.json in azure://lumi-files"
    assert catalog.root == tmp_path / "data" / "classifiers-cache"
    catalog.close()
    # Embedded, even with its files in Azure: the folder under DATA_DIR, as before.
    embedded = classifier_catalog_for(make_settings(tmp_path, **shared))
    assert isinstance(embedded.store, LocalRegistryStore)
    assert embedded.root == tmp_path / "data" / "classifiers"


class _OvertakenStore(BlobRegistryStore):
    """Lets ``rival`` (another process on the same DATA_DIR) fetch and place its copy while this one is
    still downloading its own."""

    rival: BlobRegistryStore
    rivals_copy: int | None = None  # the inode of the folder the rival placed

    def _download(self, entry: RegisteredClassifier, item: ClassifierFile, target: Path) -> None:
        if self.rivals_copy is None:
            self.rivals_copy = self.rival.model_folder(entry).stat().st_ino
        super()._download(entry, item, target)


def test_two_processes_on_one_data_dir_fetching_a_model_at_once_keep_the_first_copy(
    pattern_classifier: Path, tmp_path: Path
) -> None:
    def open_store() -> BlobStore:
        return LocalBlobStore(tmp_path / "blobs")

    registering = ClassifierCatalog(BlobRegistryStore(open_store, tmp_path / "cli-cache", where="blobs"))
    entry = registering.add(pattern_classifier, category="weapons", verify=None)
    registering.close()
    cache = tmp_path / "shared-data-dir" / "classifiers-cache"
    first, second = (
        BlobRegistryStore(open_store, cache, where="blobs"),
        _OvertakenStore(open_store, cache, where="blobs"),
    )
    second.rival = first
    try:
        folder = second.model_folder(entry)
        # The rival's copy, which it may be loading from, stayed where it was; this one was dropped.
        assert folder == cache / str(entry.id)
        assert sorted(p.name for p in folder.iterdir()) == ["metadata.json", "model.keras"]
        assert [p.name for p in cache.iterdir()] == [str(entry.id)]
        assert second.rivals_copy is not None and folder.stat().st_ino == second.rivals_copy
        assert first.model_folder(entry).stat().st_ino == second.rivals_copy
    finally:
        first.close()
        second.close()
