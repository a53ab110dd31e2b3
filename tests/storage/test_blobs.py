"""`LocalBlobStore` on disk: files at their keys, sidecars, chunking, key rules (the behaviour every
store shares, leftover temp files included, is in test_blob_store_contract.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from storage.blob_stores import LocalBlobStore
from storage.blobs import (
    BlobInfo,
    BlobStore,
    InvalidBlobKey,
    guess_content_type,
    validate_key,
)


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def test_local_store_satisfies_the_protocol(store: LocalBlobStore) -> None:
    as_protocol: BlobStore = store
    assert as_protocol is store


async def test_a_blob_is_the_file_at_its_key(store: LocalBlobStore) -> None:
    data = b"glTF" + bytes(range(256)) * 10
    await store.put("jobs/abc/model.glb", data)
    path = store.root / "jobs" / "abc" / "model.glb"
    assert path.read_bytes() == data
    assert store.path("jobs/abc/model.glb") == path
    assert await store.delete("jobs/abc/model.glb") is True
    assert not path.exists()


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
    # Every store's methods check keys the same way (test_blob_store_contract.py); this one writes files.
    with pytest.raises(InvalidBlobKey):
        await store.put(key, b"x")
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
