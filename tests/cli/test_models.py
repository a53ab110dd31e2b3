"""`lumi models add-classifier`, `classifiers` and `remove-classifier` in distributed mode: the registry
and the model files go to the blob store (Azurite), where another host's command line sees them."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest

from bot.cli import main
from storage.blob_stores.azure import AzureBlobStore
from tests.fakes.blob_emulators import Azurite, azurite

__all__ = ["azurite"]


def _distributed_env(
    monkeypatch: pytest.MonkeyPatch, azurite: Azurite, container: str, data_dir: Path
) -> None:
    monkeypatch.setenv("LUMI_MODE", "distributed")
    # Checked, never contacted by these commands.
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/lumi")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("LINK_SECRET", "test-link-secret-0123456789abcdef")
    monkeypatch.setenv("BLOB_STORE_URL", f"azure://{container}")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("DATA_DIR", str(data_dir))


async def _create_container(azurite: Azurite, container: str) -> None:
    # Created and closed on one event loop: a client closed on another leaves its connection open.
    store = AzureBlobStore(azurite.connection_string, container)
    try:
        await store.create_container()
    finally:
        await store.close()


async def _blob_keys(azurite: Azurite, container: str, keys: list[str]) -> list[str]:
    store = AzureBlobStore(azurite.connection_string, container)
    try:
        return [key for key in keys if await store.exists(key)]
    finally:
        await store.close()


def test_a_registration_goes_to_the_blob_store_for_every_host(
    azurite: Azurite,
    pattern_classifier: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    container = f"lumi-cli-{secrets.token_hex(4)}"
    asyncio.run(_create_container(azurite, container))

    _distributed_env(monkeypatch, azurite, container, tmp_path / "host-a")
    code = main(["models", "add-classifier", str(pattern_classifier), "--category", "weapons", "--no-verify"])
    assert code == 0 and "registered #1 weapons (global)" in capsys.readouterr().out
    assert not (tmp_path / "host-a" / "classifiers" / "registry.json").exists()

    _distributed_env(monkeypatch, azurite, container, tmp_path / "host-b")
    assert main(["models", "classifiers", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["id"], listed["category"]) == (1, "weapons")
    keys = ["classifiers/registry.json", *(item["key"] for item in listed["files"])]
    assert asyncio.run(_blob_keys(azurite, container, keys)) == keys

    assert main(["models", "remove-classifier", "1"]) == 0
    assert "removed #1 (weapons, global" in capsys.readouterr().out
    assert asyncio.run(_blob_keys(azurite, container, keys)) == ["classifiers/registry.json"]
    assert main(["models", "classifiers"]) == 0
    assert "no custom classifiers registered" in capsys.readouterr().out
