"""One contract for every blob store: the folder, Azure Blob (on Azurite) and S3 (on moto's server).

Each test runs against the three stores, each on a container or bucket of its own. Signed URLs are
fetched over HTTP from the emulator itself; tampered and expired ones only on Azurite, since moto accepts
any signature.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from storage.blob_stores import LocalBlobStore
from storage.blob_stores.azure import AzureBlobStore
from storage.blob_stores.s3 import S3BlobStore
from storage.blobs import (
    BlobConflict,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobStoreUnavailable,
    BlobTooLarge,
    InvalidBlobKey,
)
from tests.fakes.blob_emulators import Azurite, MotoS3, free_port

MIB = 1024 * 1024


@pytest.fixture(params=["local", "azure", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    name = f"lumi-test-{secrets.token_hex(4)}"
    blobs: BlobStore
    if request.param == "local":
        blobs = LocalBlobStore(tmp_path / "blobs")
    elif request.param == "azure":
        azurite: Azurite = request.getfixturevalue("azurite")
        azure = AzureBlobStore(azurite.connection_string, name)
        await azure.create_container()
        blobs = azure
    else:
        moto: MotoS3 = request.getfixturevalue("moto_s3")
        s3 = moto.store(name, "lumi/files")
        await s3.create_bucket()
        blobs = s3
    try:
        yield blobs
    finally:
        await blobs.close()


@pytest.fixture
async def azure_store(azurite: Azurite) -> AsyncIterator[AzureBlobStore]:
    store = AzureBlobStore(azurite.connection_string, f"lumi-test-{secrets.token_hex(4)}")
    await store.create_container()
    try:
        yield store
    finally:
        await store.close()


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def fetch(url: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read(), dict(response.headers)


async def test_put_read_stat_exists_delete(store: BlobStore) -> None:
    data = b"glTF" + bytes(range(256)) * 10
    info = await store.put("jobs/abc/model.glb", data)
    assert info == BlobInfo(
        "jobs/abc/model.glb", len(data), "model/gltf-binary", hashlib.sha256(data).hexdigest()
    )
    assert await store.read("jobs/abc/model.glb") == data
    assert await store.stat("jobs/abc/model.glb") == info
    assert await store.exists("jobs/abc/model.glb") is True

    assert await store.delete("jobs/abc/model.glb") is True
    assert await store.delete("jobs/abc/model.glb") is False
    assert await store.exists("jobs/abc/model.glb") is False
    assert await store.stat("jobs/abc/model.glb") is None
    with pytest.raises(BlobNotFound):
        await store.read("jobs/abc/model.glb")
    with pytest.raises(BlobNotFound):
        async for _chunk in store.stream("jobs/abc/model.glb"):
            pass
    await assert_no_unfinished_uploads(store)


async def test_explicit_content_type_and_overwrite(store: BlobStore) -> None:
    await store.put("evidence/42", b"\xff\xd8\xff", "image/jpeg")
    first = await store.stat("evidence/42")
    assert first is not None and first.content_type == "image/jpeg"
    second = await store.put("evidence/42", b"second!", "application/x-second")
    assert await store.read("evidence/42") == b"second!"
    assert await store.stat("evidence/42") == second


async def test_stream_returns_every_byte(store: BlobStore) -> None:
    data = os.urandom(5 * MIB + 7)
    await store.put("big.bin", data)
    chunks = [chunk async for chunk in store.stream("big.bin", chunk_size=64 * 1024)]
    assert len(chunks) > 1
    assert b"".join(chunks) == data


@pytest.mark.parametrize("sizes", [[2, 0, 3], [MIB] * 11], ids=["small", "multi-part"])
async def test_put_stream_hashes_and_counts(store: BlobStore, sizes: list[int]) -> None:
    # 11 MiB: several staged blocks on Azure, a multipart upload on S3.
    parts = [os.urandom(size) for size in sizes]
    data = b"".join(parts)
    info = await store.put_stream("jobs/j/model.usdz", chunks_of(*parts), max_bytes=len(data))
    assert info == BlobInfo(
        "jobs/j/model.usdz", len(data), "model/vnd.usdz+zip", hashlib.sha256(data).hexdigest()
    )
    assert await store.read("jobs/j/model.usdz") == data
    assert await store.stat("jobs/j/model.usdz") == info
    await assert_no_unfinished_uploads(store)


async def test_put_stream_over_the_limit_stores_nothing(store: BlobStore) -> None:
    await store.put("jobs/j/model.fbx", b"previous")
    with pytest.raises(BlobTooLarge):
        await store.put_stream("jobs/j/model.fbx", chunks_of(b"1234", b"5678"), max_bytes=6)
    assert await store.read("jobs/j/model.fbx") == b"previous"
    # Past a block (Azure) and a part (S3) before the limit is hit: what was sent never becomes a blob.
    with pytest.raises(BlobTooLarge):
        await store.put_stream("jobs/j/other.fbx", chunks_of(*[b"x" * MIB] * 12), max_bytes=11 * MIB)
    assert await store.exists("jobs/j/other.fbx") is False
    await assert_no_unfinished_uploads(store)


async def test_failing_source_leaves_no_partial_blob(store: BlobStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        for _ in range(11):
            yield b"m" * MIB
        raise ConnectionResetError("download dropped")

    with pytest.raises(ConnectionResetError):
        await store.put_stream("jobs/j/model.obj", broken())
    assert await store.exists("jobs/j/model.obj") is False
    with pytest.raises(BlobNotFound):
        await store.read("jobs/j/model.obj")
    await assert_no_unfinished_uploads(store)


async def assert_no_unfinished_uploads(store: BlobStore) -> None:
    if isinstance(store, LocalBlobStore):
        temp_dir = store.root / ".tmp"
        assert not temp_dir.exists() or list(temp_dir.iterdir()) == []
    if isinstance(store, S3BlobStore):
        s3 = await store._s3()
        listing = await s3.list_multipart_uploads(Bucket=store.bucket)
        assert listing.get("Uploads", []) == []
    if isinstance(store, AzureBlobStore):
        # Uncommitted blocks are invisible: no committed blob lists under the key's folder.
        names = [blob.name async for blob in store._client.list_blobs(name_starts_with="jobs/j/")]
        assert "jobs/j/other.fbx" not in names and "jobs/j/model.obj" not in names


@pytest.mark.parametrize("key", ["", "../outside", "a//b", ".meta/x.json", "with space", "x" * 513])
async def test_bad_keys_are_rejected(store: BlobStore, key: str) -> None:
    with pytest.raises(InvalidBlobKey):
        await store.put(key, b"x")
    with pytest.raises(InvalidBlobKey):
        await store.read(key)
    with pytest.raises(InvalidBlobKey):
        await store.delete(key)


async def test_signed_url_serves_the_blob_with_its_name(store: BlobStore) -> None:
    await store.put("jobs/abc/model.glb", b"glTF-signed")
    url = await store.signed_url("jobs/abc/model.glb", ttl_s=300, filename="my lamp.glb")
    if isinstance(store, LocalBlobStore):
        assert url is None  # the web server streams a folder's files itself
        return
    assert url is not None
    status, body, headers = await fetch(url)
    assert (status, body) == (200, b"glTF-signed")
    assert headers["Content-Disposition"] == "inline; filename*=UTF-8''my%20lamp.glb"
    assert headers["Content-Type"] == "model/gltf-binary"


async def test_azure_refuses_tampered_expired_and_unsigned_urls(azure_store: AzureBlobStore) -> None:
    await azure_store.put("jobs/abc/model.glb", b"glTF")
    url = await azure_store.signed_url("jobs/abc/model.glb", ttl_s=300, filename="model.glb")
    assert url is not None
    assert (await fetch(url))[0] == 200
    base, _, query = url.partition("?")
    assert (await fetch(base))[0] in (403, 404)  # no SAS: the container is private
    # Read-only turned into read-write: the signature no longer matches.
    assert (await fetch(f"{base}?{query.replace('sp=r', 'sp=rw')}"))[0] == 403
    signature_at = query.index("sig=") + 4
    flipped = "A" if query[signature_at] != "A" else "B"
    assert (await fetch(f"{base}?{query[:signature_at]}{flipped}{query[signature_at + 1 :]}"))[0] == 403

    short = await azure_store.signed_url("jobs/abc/model.glb", ttl_s=1, filename="model.glb")
    assert short is not None
    started = time.monotonic()
    await asyncio.sleep(2.2)
    assert time.monotonic() - started >= 2
    assert (await fetch(short))[0] == 403


@pytest.mark.parametrize("backend", ["azure", "s3"])
async def test_an_unreachable_store_fails_fast_with_a_clear_error(backend: str) -> None:
    port = free_port()  # nothing listens there
    unreachable: BlobStore
    if backend == "azure":
        unreachable = AzureBlobStore(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
            "lumi",
        )
    else:
        unreachable = S3BlobStore(
            "lumi",
            endpoint_url=f"http://127.0.0.1:{port}",
            region="us-east-1",
            access_key_id="k",
            secret_access_key="s",
        )
    started = time.monotonic()
    try:
        for attempt in (unreachable.put("jobs/a/model.glb", b"x"), unreachable.read("jobs/a/model.glb")):
            with pytest.raises(BlobStoreUnavailable) as caught:
                await attempt
            assert isinstance(caught.value, OSError)  # the web server's 503 for storage faults
            assert f"127.0.0.1:{port}" in str(caught.value) and "jobs/a/model.glb" in str(caught.value)
    finally:
        await unreachable.close()
    assert time.monotonic() - started < 15


async def test_compare_and_swap_lets_one_writer_win(store: BlobStore) -> None:
    assert await store.read_versioned("shared/registry.json") is None
    first = await store.put_if_version("shared/registry.json", b'{"n": 1}', version=None)
    with pytest.raises(BlobConflict):
        await store.put_if_version("shared/registry.json", b'{"n": "again"}', version=None)
    current = await store.read_versioned("shared/registry.json")
    assert current is not None and current.data == b'{"n": 1}' and current.version == first

    second = await store.put_if_version("shared/registry.json", b'{"n": 2}', version=first)
    assert second != first
    # A writer still holding the first version loses, and changes nothing.
    with pytest.raises(BlobConflict):
        await store.put_if_version("shared/registry.json", b'{"n": "stale"}', version=first)
    latest = await store.read_versioned("shared/registry.json")
    assert latest is not None and (latest.data, latest.version) == (b'{"n": 2}', second)
    info = await store.stat("shared/registry.json")
    assert info is not None and info.content_type == "application/json"


async def test_concurrent_compare_and_swap_writers_never_lose_an_update(store: BlobStore) -> None:
    await store.put_if_version("shared/counter.txt", b"0", version=None)

    async def increment() -> None:
        while True:
            current = await store.read_versioned("shared/counter.txt")
            assert current is not None
            try:
                await store.put_if_version(
                    "shared/counter.txt", str(int(current.data) + 1).encode(), version=current.version
                )
                return
            except BlobConflict:
                continue

    await asyncio.gather(*(increment() for _ in range(8)))
    assert await store.read("shared/counter.txt") == b"8"


async def test_a_listing_names_every_blob_under_a_prefix_with_its_size_and_age(store: BlobStore) -> None:
    before = time.time()
    await store.put("classifiers/1-violence-ab/model.keras", b"model")
    await store.put_stream("classifiers/1-violence-ab/metadata.json", chunks_of(b"{", b"}"))
    await store.put("classifiers/registry.json", b"[]")
    await store.put("classifiers-other/x.bin", b"not under the folder")
    await store.put("jobs/j1/model.glb", b"glb")

    listed = await store.list_blobs("classifiers/")
    assert sorted((blob.key, blob.size) for blob in listed) == [
        ("classifiers/1-violence-ab/metadata.json", 2),
        ("classifiers/1-violence-ab/model.keras", 5),
        ("classifiers/registry.json", 2),
    ]
    # The emulators' clocks are this machine's; their stamps may be rounded down to the second.
    assert all(before - 2 <= blob.modified <= time.time() + 2 for blob in listed)
    assert sorted(blob.key for blob in await store.list_blobs("classifiers/1-")) == [
        "classifiers/1-violence-ab/metadata.json",
        "classifiers/1-violence-ab/model.keras",
    ]
    await store.delete("classifiers/1-violence-ab/model.keras")
    assert "classifiers/1-violence-ab/model.keras" not in {b.key for b in await store.list_blobs("")}
    assert await store.list_blobs("nothing-here/") == []
