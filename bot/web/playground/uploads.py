"""Reading a playground form (files and a few text fields) under the bot's own limits, losing nothing.

The parts are read as they arrive, so a huge file costs only what it takes to skip it: a file over the
per-image byte limit (``MODERATION_MAX_IMAGE_MB``) is kept as a name with the reason, files past the
per-post image limit as names too, and the other files are still checked. Nothing is written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from aiohttp import BodyPartReader, web

from bot.errors import UserFacingError

__all__ = ["FormLimits", "SkippedFile", "UploadForm", "UploadedFile", "read_form"]

_CHUNK: Final = 64 * 1024
_MAX_FIELD_BYTES: Final = 64 * 1024
_MAX_FIELDS: Final = 32


@dataclass(frozen=True)
class FormLimits:
    max_files: int
    max_file_bytes: int

    @property
    def max_total_bytes(self) -> int:
        """What one form may carry in all: every allowed file at its limit, plus room for the fields."""
        return (self.max_files + 1) * self.max_file_bytes + _MAX_FIELDS * _MAX_FIELD_BYTES


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    data: bytes


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not read, and why (in words a person can act on)."""

    filename: str
    reason: str
    code: str


@dataclass
class UploadForm:
    files: list[UploadedFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)

    def field(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0] if values else default

    def field_list(self, name: str) -> list[str]:
        return list(self.fields.get(name, []))


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.3g}"


async def read_form(request: web.Request, limits: FormLimits) -> UploadForm:
    """The files and fields of a ``multipart/form-data`` POST; raises ``UserFacingError`` when the
    request is not a form, or carries more than any form may."""
    if request.content_type != "multipart/form-data":
        raise UserFacingError("Send the images as a form upload (multipart/form-data).")
    reader = await request.multipart()
    form = UploadForm()
    total = 0
    field_count = 0
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise UserFacingError("Nested multipart forms are not accepted.")
        name = part.name or ""
        if part.filename is not None:
            total += await _read_file(part, form, limits, limit_left=limits.max_total_bytes - total)
        else:
            field_count += 1
            if field_count > _MAX_FIELDS:
                raise UserFacingError(f"A form has at most {_MAX_FIELDS} fields.")
            data, size = await _read_capped(part, _MAX_FIELD_BYTES)
            total += size
            if data is None:
                raise UserFacingError(f"The field {name!r} is longer than {_MAX_FIELD_BYTES // 1024} KB.")
            form.fields.setdefault(name, []).append(data.decode("utf-8", errors="replace"))
        if total > limits.max_total_bytes:
            raise UserFacingError(
                f"The upload is larger than {megabytes(limits.max_total_bytes)} MB in all; "
                f"send at most {limits.max_files} images of {megabytes(limits.max_file_bytes)} MB each."
            )
    return form


async def _read_file(part: BodyPartReader, form: UploadForm, limits: FormLimits, *, limit_left: int) -> int:
    """Reads (or skips) one file part; returns the bytes it carried."""
    filename = (part.filename or "image").replace("\\", "/").rsplit("/", 1)[-1][:120] or "image"
    # As in a post: the first images count, whether or not they were too large to download.
    if len(form.files) + sum(1 for item in form.skipped if item.code == "too_large") >= limits.max_files:
        _, size = await _read_capped(part, 0, drain_up_to=limit_left)
        form.skipped.append(
            SkippedFile(
                filename,
                f"past the first {limits.max_files} images of a post, which is all the bot checks "
                "(MODERATION_MAX_IMAGES_PER_MESSAGE)",
                "too_many_images",
            )
        )
        return size
    data, size = await _read_capped(part, limits.max_file_bytes, drain_up_to=limit_left)
    if data is None:
        form.skipped.append(
            SkippedFile(
                filename,
                f"larger than the {megabytes(limits.max_file_bytes)} MB the bot downloads "
                "(MODERATION_MAX_IMAGE_MB)",
                "too_large",
            )
        )
    else:
        form.files.append(UploadedFile(filename, data))
    return size


async def _read_capped(
    part: BodyPartReader, cap: int, *, drain_up_to: int = _MAX_FIELD_BYTES
) -> tuple[bytes | None, int]:
    """The part's bytes when they fit in ``cap`` (else None, the rest skipped, reading on no further than
    ``drain_up_to``), and how many bytes it carried."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await part.read_chunk(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size <= cap:
            chunks.append(chunk)
        else:
            chunks.clear()
            if size > max(cap, drain_up_to):
                break
    return (b"".join(chunks) if size <= cap else None), size
