"""A finished Meshy task's files into Lumi's blob store: which files, under which keys and names, and the
OBJ package that Blender and other tools can open in one go.

Meshy's file URLs are signed and expire after a few days, so every file is copied while the task is fresh.
Each job's files live under ``jobs/<job id>/`` with fixed stems (``model.<format>``, ``preview.<ext>``,
``texture_<map>.<ext>``, ``model.zip``); ``job_files.asset_from_row`` reads the kind back from
the key. An OBJ alone is not usable: it names its material file, which names its texture images, so the
ZIP holds all three under the names they refer to each other by.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import zipfile
from collections.abc import Callable
from urllib.parse import urlsplit

from bot.services.generate3d.job_rows import hold_job
from bot.services.generate3d.shapes import JobGone, LeaseLost
from inference.remote.meshy import (
    MeshyAssetUnavailable,
    MeshyClient,
    MeshyError,
    MeshyProtocolError,
    MeshyTask,
)
from storage.blobs import BlobInfo, BlobStore
from storage.db import Database
from storage.models import AssetOwner, GenerationJob
from storage.repo import assets as repo_assets

# (blob key, URL, file name for people who download it)
PlannedFile = tuple[str, str, str]
Progress = Callable[[int, int], None]

_MTL_MAPS = {
    "map_kd": "base_color",
    "map_ka": "base_color",
    "map_bump": "normal",
    "bump": "normal",
    "norm": "normal",
    "map_pr": "roughness",
    "map_pm": "metallic",
}
_NAME_HINTS = (
    ("normal", "normal"),
    ("rough", "roughness"),
    ("metal", "metallic"),
    ("base", "base_color"),
    ("color", "base_color"),
    ("albedo", "base_color"),
    ("diffuse", "base_color"),
)


def slug(text: str, limit: int = 40) -> str:
    words = re.findall(r"[A-Za-z0-9]+", text.lower())
    return "-".join(words)[:limit].strip("-") or "model"


def _extension(url: str, default: str) -> str:
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return suffix if re.fullmatch(r"[a-z0-9]{2,5}", suffix) else default


def job_of_key(key: str) -> str | None:
    """The id of the job a blob key belongs to (``jobs/<job id>/...``), or None for other keys."""
    match = re.fullmatch(r"jobs/([0-9a-f]{32})/[^/]+", key)
    return match.group(1) if match else None


def download_name(job: GenerationJob) -> str:
    return f"{slug(job.prompt)}-{job.id[:8]}"


def download_plan(job: GenerationJob, task: MeshyTask) -> list[PlannedFile]:
    """Every file of the finished task."""
    name = download_name(job)
    plan: list[PlannedFile] = []
    for fmt, url in sorted(task.model_urls.items()):
        if re.fullmatch(r"[a-z0-9]{2,5}", fmt):
            plan.append((f"jobs/{job.id}/model.{fmt}", url, f"{name}.{fmt}"))
    if task.thumbnail_url:
        ext = _extension(task.thumbnail_url, "png")
        plan.append((f"jobs/{job.id}/preview.{ext}", task.thumbnail_url, f"{name}-preview.{ext}"))
    for maps in task.texture_urls[:1]:
        for texture, url in sorted(maps.items()):
            if re.fullmatch(r"[a-z_]{2,32}", texture):
                ext = _extension(url, "png")
                plan.append((f"jobs/{job.id}/texture_{texture}.{ext}", url, f"{name}-{texture}.{ext}"))
    return plan


def fresh_url(task: MeshyTask, key: str) -> str | None:
    """The current URL of the file stored under ``key`` (signed URLs expire; a new GET renews them)."""
    stem, _, ext = key.rsplit("/", 1)[-1].rpartition(".")
    if stem == "model":
        return task.model_urls.get(ext)
    if stem == "preview":
        return task.thumbnail_url
    if stem.startswith("texture_") and task.texture_urls:
        return task.texture_urls[0].get(stem[len("texture_") :])
    return None


def _texture_for(directive: str, filename: str) -> str | None:
    lowered = filename.lower()
    for hint, texture in _NAME_HINTS:
        if hint in lowered:
            return texture
    return _MTL_MAPS.get(directive)


def obj_bundle(obj: bytes, mtl: bytes | None, textures: dict[str, bytes], *, name: str) -> bytes:
    """A ZIP with ``<name>.obj``, its material file and textures, named as the files refer to each other."""
    text = obj.decode("utf-8", errors="replace")
    mtl_name = next(
        (line.split(maxsplit=1)[1].strip() for line in text.splitlines() if line.startswith("mtllib ")),
        "model.mtl",
    )
    members: dict[str, bytes] = {f"{name}.obj": obj}
    if mtl is not None:
        members[mtl_name] = mtl
        for line in mtl.decode("utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].lower() in _MTL_MAPS:
                # Options such as "-bm 1.0" come before the file name, which is last.
                referenced = parts[-1]
                texture = _texture_for(parts[0].lower(), referenced)
                if texture in textures and "/" not in referenced and ".." not in referenced:
                    members.setdefault(referenced, textures[texture])
    for texture, data in textures.items():
        if data not in members.values():
            members[f"texture_{texture}.png"] = data
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(zipfile.ZipInfo(member, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


class AssetSaver:
    """Downloads a task's files into the blob store and records them, skipping files already there."""

    def __init__(
        self,
        *,
        meshy: MeshyClient,
        blobs: BlobStore,
        database: Database,
        max_bytes: int,
        concurrency: int = 4,
    ) -> None:
        self.meshy = meshy
        self.blobs = blobs
        self.database = database
        self.max_bytes = max_bytes
        self.concurrency = concurrency

    async def save(
        self, job: GenerationJob, task: MeshyTask, on_progress: Progress, *, epoch: int | None = None
    ) -> None:
        """Download concurrently, then write every row in one transaction.

        A crash in between leaves blobs without rows, which the resumed job simply downloads again. With
        ``epoch`` (a claimed job) the rows are written only while the job's lease is still that one; a
        job canceled or deleted meanwhile gets no rows, and the files just stored are removed again.
        """
        async with self.database.session() as session:
            existing = {row.key for row in await repo_assets.list_job_assets(session=session, job_id=job.id)}
        plan = download_plan(job, task)
        if not plan:
            raise MeshyProtocolError(f"Meshy task {task.id} succeeded without any file", status=None)
        missing = [item for item in plan if item[0] not in existing]
        total = len(plan) + 1
        done = len(plan) - len(missing)
        gate = asyncio.Semaphore(self.concurrency)

        async def fetch(item: PlannedFile) -> tuple[str, BlobInfo]:
            nonlocal done
            key, url, filename = item
            async with gate:
                info = await self._store(task, key, url)
            done += 1
            on_progress(done, total)
            return filename, info

        stored = list(await asyncio.gather(*(fetch(item) for item in missing)))
        bundle_key = f"jobs/{job.id}/model.zip"
        if bundle_key not in existing:
            bundled = await self._bundle(job, bundle_key)
            if bundled is not None:
                stored.append(bundled)
        on_progress(total, total)
        if not stored:
            return
        try:
            async with self.database.session() as session:
                if epoch is not None:
                    await hold_job(session, job.id, epoch)
                for filename, info in stored:
                    await repo_assets.record_blob(
                        session=session,
                        blob=info,
                        filename=filename,
                        owner_kind=AssetOwner.JOB.value,
                        owner_id=job.id,
                    )
                await session.commit()
        except LeaseLost:
            # The files are the new holder's to write (under the same keys): leave them.
            raise
        except JobGone:
            # Canceled or deleted (in another process) while its files came in: nobody serves them.
            for _, info in stored:
                with contextlib.suppress(Exception):
                    await self.blobs.delete(info.key)
            raise

    async def _bundle(self, job: GenerationJob, key: str) -> tuple[str, BlobInfo] | None:
        folder = f"jobs/{job.id}"
        if not await self.blobs.exists(f"{folder}/model.obj"):
            return None
        obj = await self.blobs.read(f"{folder}/model.obj")
        mtl = (
            await self.blobs.read(f"{folder}/model.mtl")
            if await self.blobs.exists(f"{folder}/model.mtl")
            else None
        )
        textures: dict[str, bytes] = {}
        for texture in ("base_color", "metallic", "normal", "roughness"):
            texture_key = f"{folder}/texture_{texture}.png"
            if await self.blobs.exists(texture_key):
                textures[texture] = await self.blobs.read(texture_key)
        name = download_name(job)
        data = await asyncio.to_thread(obj_bundle, obj, mtl, textures, name=name)
        info = await self.blobs.put(key, data, "application/zip")
        return f"{name}-obj.zip", info

    async def _store(self, task: MeshyTask, key: str, url: str) -> BlobInfo:
        attempts = 0
        while True:
            try:
                async with contextlib.aclosing(
                    self.meshy.iter_download(url, max_bytes=self.max_bytes)
                ) as chunks:
                    return await self.blobs.put_stream(key, chunks, max_bytes=self.max_bytes)
            except MeshyAssetUnavailable:
                # Signed URLs expire; the task's current answer carries fresh ones.
                attempts += 1
                if attempts > 1:
                    raise
                url = fresh_url(await self.meshy.get_task(task.id), key) or url
            except MeshyError as error:
                attempts += 1
                if not error.retryable or attempts > 3:
                    raise
                await asyncio.sleep(0.5 * attempts)
