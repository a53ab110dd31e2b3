"""`LocalBlobStore` on disk: temp files, sidecars, key rules (the behaviour every store shares is in
test_blob_store_contract.py)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.blob_stores import LocalBlobStore
from storage.blobs import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    InvalidBlobKey,
    guess_content_type,
    validate_key,
)


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def leftover_temp_files(store: LocalBlobStore) -> list[Path]:
    temp_dir = store.root / ".tmp"
    return sorted(temp_dir.iterdir()) if temp_dir.exists() else []


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_local_store_satisfies_the_protocol(store: LocalBlobStore) -> None:
    as_protocol: BlobStore = store
    assert as_protocol is store


async def test_put_read_stat_exists_delete(store: LocalBlobStore) -> None:
    data = b"glTF" + bytes(range(256)) * 10
    info = await store.put("jobs/abc/model.glb", data)
    assert info == BlobInfo(
        "jobs/abc/model.glb", len(data), "model/gltf-binary", hashlib.sha256(data).hexdigest()
    )
    assert (store.root / "jobs" / "abc" / "model.glb").read_bytes() == data
    assert await store.read("jobs/abc/model.glb") == data
    assert await store.stat("jobs/abc/model.glb") == info
    assert await store.exists("jobs/abc/model.glb") is True

    assert await store.delete("jobs/abc/model.glb") is True
    assert await store.delete("jobs/abc/model.glb") is False
    assert await store.exists("jobs/abc/model.glb") is False
    assert await store.stat("jobs/abc/model.glb") is None
    with pytest.raises(BlobNotFound):
        await store.read("jobs/abc/model.glb")
    assert leftover_temp_files(store) == []


async def test_explicit_content_type_is_kept(store: LocalBlobStore) -> None:
    await store.put("evidence/42", b"\xff\xd8\xff", "image/jpeg")
    info = await store.stat("evidence/42")
    assert info is not None and info.content_type == "image/jpeg"


async def test_overwrite_replaces_content_and_metadata(store: LocalBlobStore) -> None:
    await store.put("a/b.bin", b"first", "application/x-first")
    second = await store.put("a/b.bin", b"second!", "application/x-second")
    assert await store.read("a/b.bin") == b"second!"
    assert await store.stat("a/b.bin") == second


async def test_stat_recomputes_when_the_file_changed_behind_its_back(store: LocalBlobStore) -> None:
    await store.put("notes.txt", b"old text")
    path = store.path("notes.txt")
    path.write_bytes(b"edited by hand")
    os.utime(path, ns=(1, 1))
    info = await store.stat("notes.txt")
    assert info == BlobInfo("notes.txt", 14, "text/plain", hashlib.sha256(b"edited by hand").hexdigest())


async def test_stream_yields_chunks(store: LocalBlobStore) -> None:
    data = os.urandom(200 * 1024 + 7)
    await store.put("big.bin", data)
    chunks = [chunk async for chunk in store.stream("big.bin", chunk_size=64 * 1024)]
    assert [len(chunk) for chunk in chunks] == [65536, 65536, 65536, 8199]
    assert b"".join(chunks) == data
    with pytest.raises(BlobNotFound):
        async for _chunk in store.stream("missing.bin"):
            pass


async def test_put_stream_hashes_and_counts(store: LocalBlobStore) -> None:
    info = await store.put_stream("jobs/j/model.usdz", chunks_of(b"ab", b"", b"cde"), max_bytes=5)
    assert info == BlobInfo(
        "jobs/j/model.usdz", 5, "model/vnd.usdz+zip", hashlib.sha256(b"abcde").hexdigest()
    )
    assert await store.read("jobs/j/model.usdz") == b"abcde"
    assert leftover_temp_files(store) == []


async def test_put_stream_over_the_limit_stores_nothing(store: LocalBlobStore) -> None:
    await store.put("jobs/j/model.fbx", b"previous")
    with pytest.raises(BlobTooLarge):
        await store.put_stream("jobs/j/model.fbx", chunks_of(b"1234", b"5678"), max_bytes=6)
    assert await store.read("jobs/j/model.fbx") == b"previous"
    with pytest.raises(BlobTooLarge):
        await store.put_stream("jobs/j/other.fbx", chunks_of(b"1234567"), max_bytes=6)
    assert await store.exists("jobs/j/other.fbx") is False
    assert leftover_temp_files(store) == []


async def test_failing_source_leaves_no_partial_blob(store: LocalBlobStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"half of a model"
        raise ConnectionResetError("download dropped")

    with pytest.raises(ConnectionResetError):
        await store.put_stream("jobs/j/model.obj", broken())
    assert await store.exists("jobs/j/model.obj") is False
    assert not store.path("jobs/j/model.obj").exists()
    assert leftover_temp_files(store) == []


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../outside",
        "a/../../outside",
        "a/./b",
        "a//b",
        "a/",
        ".meta/x.json",
        ".tmp/x",
        "dir/.hidden",
        "back\\slash",
        "with space",
        "ünicode",
        "a:b",
        "x" * 513,
    ],
)
async def test_bad_keys_are_rejected(store: LocalBlobStore, key: str) -> None:
    with pytest.raises(InvalidBlobKey):
        validate_key(key)
    with pytest.raises(InvalidBlobKey):
        await store.put(key, b"x")
    with pytest.raises(InvalidBlobKey):
        await store.read(key)
    with pytest.raises(InvalidBlobKey):
        await store.delete(key)
    assert not (store.root.parent / "outside").exists()


@pytest.mark.parametrize("key", ["a", "A-Z_0.9", "jobs/0123abcd/model.glb", "x" * 512, "a.b.c/d-e_f"])
def test_good_keys_are_accepted(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "content_type"),
    [
        ("m.glb", "model/gltf-binary"),
        ("m.GLB", "model/gltf-binary"),
        ("m.usdz", "model/vnd.usdz+zip"),
        ("m.fbx", "application/octet-stream"),
        ("m.obj", "model/obj"),
        ("m.mtl", "text/plain"),
        ("p.png", "image/png"),
        ("p.jpg", "image/jpeg"),
        ("no-extension", "application/octet-stream"),
    ],
)
def test_content_type_guesses(key: str, content_type: str) -> None:
    assert guess_content_type(key) == content_type
