"""Why a file could not become model input: unreadable, or readable with the wrong geometry.

Both are `ValueError`s, so the `ctrip` command prints them as `error: ...`; the importers turn
them into a dropped subject with its reason (see `ctrip.io.importer.DROP_REASONS`).
"""

from __future__ import annotations


class UnreadableFileError(ValueError):
    """A file that cannot be read as the format it should be in (the message names it)."""


class GeometryError(ValueError):
    """A readable file whose content has the wrong shape: too few slices, missing leads, ..."""
