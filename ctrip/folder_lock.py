"""One writer per folder: an exclusive, non-blocking lock on a file, naming its holder.

`ctrip run` holds `<results>/.lock`; `ctrip cohort synth` holds `.<cohort>.lock` beside the
cohort folder (the cohort folder itself is replaced when the cohort is finished). The lock is
the kernel's (`flock`), so a writer that dies releases it.
"""

from __future__ import annotations

import fcntl
import os
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path


@contextmanager
def folder_lock(lock_path: Path, busy: Callable[[str], Exception]) -> Iterator[None]:
    """Hold `lock_path` for the duration; when another process holds it, raise `busy(holder)`,
    `holder` saying which process ("pid N on HOST, since TIME")."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise busy(handle.read().strip() or "unknown") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {platform.node()}, since "
                     f"{datetime.now(UTC).isoformat(timespec='seconds')}")  # fmt: skip
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock
