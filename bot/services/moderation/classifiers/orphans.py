"""Classifier files in the blob store that no registration names, and the sweep that removes them.

A registration uploads its folder (``classifiers/<id>-<category>-<random>/``) before it writes the
registry, and a removal writes the registry before it deletes the folder; a registry write or a delete
that fails in between (a store that stopped answering, a command killed) leaves a folder no entry
names, which nothing else would ever delete. The sweep lists ``classifiers/``, then reads the registry
(in that order, so a folder registered meanwhile is named by what it reads), and deletes every folder
the registry does not name whose newest file is older than a grace period: an upload in progress, or
one whose registry write is retrying, is younger than that and stays.

It runs in one process of the deployment at a time (``ClassifierFileSweep``, a ``ClusterLock``), every
``interval_s`` like the other clean-up loops. A registry that cannot be read or parsed stops the pass:
nothing is deleted when it is not certain what the registry names.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from typing import Final, Protocol

from bot.services.periodic import PeriodicTask
from storage.blobs import BlobStore, ListedBlob
from storage.db import Database
from storage.locks import ClusterLock

__all__ = ["ORPHAN_GRACE_S", "ClassifierFileSweep", "OrphanSweeper", "sweep_orphan_folders"]

log = logging.getLogger(__name__)

# Far longer than an upload plus its registry write takes; the store's clock may differ from ours too.
ORPHAN_GRACE_S: Final = 3600.0


class UnreadableRegistry(Exception):
    """The registry exists but is not one Lumi can read: the sweep deletes nothing."""


def named_folders(data: bytes) -> set[str]:
    """Every folder the registry document names, in an entry's ``folder`` or in one of its files' keys,
    entries that do not parse as registrations included (those are kept too)."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except ValueError as error:
        raise UnreadableRegistry(f"the classifier registry cannot be parsed: {error}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("classifiers", []), list):
        raise UnreadableRegistry("the classifier registry is not one Lumi wrote")
    names: set[str] = set()
    for item in raw.get("classifiers", []):
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("folder"), str):
            names.add(item["folder"])
        for entry in item.get("files") or []:
            key = entry.get("key") if isinstance(entry, dict) else None
            if isinstance(key, str) and key.count("/") >= 2:
                names.add(key.split("/")[1])
    return names


def _folders(listed: list[ListedBlob], prefix: str) -> dict[str, list[ListedBlob]]:
    """The listing grouped by folder (``prefix/<folder>/<file>``); blobs beside the folders are left out."""
    folders: defaultdict[str, list[ListedBlob]] = defaultdict(list)
    for blob in listed:
        rest = blob.key[len(prefix) + 1 :]
        folder, slash, _ = rest.partition("/")
        if slash:
            folders[folder].append(blob)
    return folders


async def sweep_orphan_folders(
    store: BlobStore,
    *,
    prefix: str,
    registry_key: str,
    older_than_s: float = ORPHAN_GRACE_S,
    now: float | None = None,
) -> list[str]:
    """Delete the folders under ``prefix`` that the registry at ``registry_key`` does not name and whose
    newest file is older than ``older_than_s``; returns their names."""
    listed = await store.list_blobs(f"{prefix}/")
    document = await store.read_versioned(registry_key)
    named = set() if document is None else named_folders(document.data)
    cutoff = (time.time() if now is None else now) - older_than_s
    removed: list[str] = []
    for folder, blobs in sorted(_folders(listed, prefix).items()):
        if folder in named or max(blob.modified for blob in blobs) >= cutoff:
            continue
        for blob in blobs:
            await store.delete(blob.key)
        log.info(
            "removed %s/%s/ (%d file(s), %d bytes): no registered classifier names it",
            prefix,
            folder,
            len(blobs),
            sum(blob.size for blob in blobs),
        )
        removed.append(folder)
    return removed


class OrphanSweeper(Protocol):
    def sweep_orphans(self, *, older_than_s: float) -> list[str]:
        """Blocking: delete the registry's orphaned folders (see ``sweep_orphan_folders``)."""
        ...


class ClassifierFileSweep(PeriodicTask):
    """Runs the sweep of a blob-store registry at start and every ``interval_s``, in one process."""

    def __init__(
        self,
        store: OrphanSweeper,
        database: Database,
        *,
        interval_s: float,
        older_than_s: float = ORPHAN_GRACE_S,
    ) -> None:
        super().__init__(
            interval_s=interval_s,
            name="lumi-classifier-file-sweep",
            description="classifier file sweep",
            logger=log,
            # One process of the deployment lists and deletes; the others would race it for the same blobs.
            cluster_lock=ClusterLock(database.engine, "classifier file sweep"),
        )
        self.store = store
        self.older_than_s = older_than_s
        self.runs = 0

    async def run_once(self) -> list[str]:
        # The registry store's calls block (they run on its own event loop): off this loop.
        removed = await asyncio.to_thread(self.store.sweep_orphans, older_than_s=self.older_than_s)
        self.runs += 1
        return removed
