"""Reading the image files a user names on the command line (`lumi scan`, `lumi comment`), safely.

A path can name anything: a named pipe (reading it waits for a writer that never comes), a device such
as ``/dev/zero`` (reading it never ends), a sparse file that claims gigabytes. Each is refused with one
short reason before any byte is read, and a regular file is read no further than the size limit, so a
file that grows while it is read cannot take more memory than the limit either.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

__all__ = ["UnreadableInput", "read_input_file"]

# Opening a named pipe without O_NONBLOCK waits for a writer; with it, the open returns at once.
_OPEN_FLAGS: Final = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class UnreadableInput(Exception):
    """A file that was not read; ``reason`` says why, in a few words fit for a table cell."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_input_file(path: Path, *, max_bytes: int) -> bytes:
    """The bytes of the regular file at ``path`` (symbolic links followed), at most ``max_bytes`` of them.

    Raises ``UnreadableInput`` for a missing path, one that is not a regular file, a file over the limit
    and any error the system reports. Blocking: call it from a worker thread.
    """
    try:
        # Judged before opening: opening some kinds of file (a tape, a terminal) has effects of its own.
        _check_status(os.stat(path), max_bytes)
        descriptor = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise UnreadableInput("file not found") from None
    except OSError as error:
        raise UnreadableInput(f"cannot read: {error.strerror or error}") from None
    try:
        with open(descriptor, "rb", closefd=True) as file:
            # The path may have been swapped for something else between the two looks.
            _check_status(os.fstat(file.fileno()), max_bytes)
            data = file.read(max_bytes + 1)
    except OSError as error:
        raise UnreadableInput(f"cannot read: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise UnreadableInput(_too_large(max_bytes))
    return data


def _check_status(status: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise UnreadableInput(f"not a file ({_kind(status.st_mode)})")
    if status.st_size > max_bytes:
        raise UnreadableInput(_too_large(max_bytes))


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "an unusual kind of file"


def _too_large(max_bytes: int) -> str:
    return f"larger than the {max_bytes / (1024 * 1024):g} MB limit"
