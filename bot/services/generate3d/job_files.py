"""What a finished 3D job offers: its stored files by kind, and why there are none once they expired.

``JobFiles`` rides on the final snapshot of a job, so whoever shows the result (the Discord message) has
every asset, the thumbnail's key and the download names without asking the service again; ``JobResult``
(in ``shapes``) is the same grouping with the job row, for the web page and the command line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot.services.generate3d.retention import files_expired_note
from storage.models import GenerationJob, StoredAsset


@dataclass(frozen=True)
class JobAsset:
    key: str
    filename: str
    content_type: str
    size: int
    kind: str  # "model", "texture" or "thumbnail"
    name: str  # the format for models ("glb"), the map for textures ("base_color")


def asset_from_row(row: StoredAsset) -> JobAsset:
    base = row.key.rsplit("/", 1)[-1].rsplit(".", 1)
    stem, ext = base[0], base[-1] if len(base) > 1 else ""
    if stem == "model":
        return JobAsset(row.key, row.filename, row.content_type, row.size, "model", ext)
    if stem.startswith("texture_"):
        return JobAsset(row.key, row.filename, row.content_type, row.size, "texture", stem[len("texture_") :])
    return JobAsset(row.key, row.filename, row.content_type, row.size, "thumbnail", ext)


class AssetGroups:
    """A job's files by kind: models by format, textures by map, and the thumbnail."""

    @property
    def all_assets(self) -> Sequence[JobAsset]:
        raise NotImplementedError

    @property
    def models(self) -> list[JobAsset]:
        return [asset for asset in self.all_assets if asset.kind == "model"]

    @property
    def textures(self) -> list[JobAsset]:
        return [asset for asset in self.all_assets if asset.kind == "texture"]

    @property
    def thumbnail(self) -> JobAsset | None:
        return next((asset for asset in self.all_assets if asset.kind == "thumbnail"), None)

    def model(self, fmt: str) -> JobAsset | None:
        return next((asset for asset in self.models if asset.name == fmt), None)


@dataclass(frozen=True)
class JobFiles(AssetGroups):
    """The files of a finished job as stored, or none with ``expired_note`` saying why."""

    assets: tuple[JobAsset, ...] = ()
    expired_note: str | None = None

    @property
    def all_assets(self) -> Sequence[JobAsset]:
        return self.assets


def job_files(job: GenerationJob, rows: Iterable[StoredAsset]) -> JobFiles:
    """The job's files from its asset rows; none once they expired."""
    note = files_expired_note(job)
    if note is not None:
        # Blobs whose deletion failed wait for the next clean-up; they are not offered.
        return JobFiles((), note)
    return JobFiles(tuple(asset_from_row(row) for row in rows))
