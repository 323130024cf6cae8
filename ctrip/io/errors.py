"""Why a file could not become model input: unreadable, or readable with the wrong geometry.

Both are `ValueError`s, so the `ctrip` command prints them as `error: ...`; the importers turn
them into a dropped subject with its reason (see `ctrip.io.importer.DROP_REASONS`). `check_regular_file` is the
check every reader makes before opening a file.
"""

from __future__ import annotations

import stat
from pathlib import Path


class UnreadableFileError(ValueError):
    """A file that cannot be read as the format it should be in (the message names it)."""


class GeometryError(ValueError):
    """A readable file whose content has the wrong shape: too few slices, missing leads, ..."""


def check_regular_file(path: Path) -> Path:
    """`path` when it is a regular file (links followed), else `UnreadableFileError` naming it.

    Checked before opening: opening a FIFO waits for a writer forever, and a device such as
    `/dev/zero` never ends, so a reader would hang or fill memory.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UnreadableFileError(f"{path}: no such file") from None
    except OSError as err:
        raise UnreadableFileError(f"{path}: cannot be read ({err.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = (
            "a folder" if stat.S_ISDIR(mode)
            else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket"
        )  # fmt: skip
        raise UnreadableFileError(f"{path}: {kind}, not a regular file; refused")
    return path
