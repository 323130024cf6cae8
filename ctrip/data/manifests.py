"""Data manifests in `data_manifests/`: the UK Biobank field map and its list of leaking fields."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import yaml

from ctrip.data.schema import CP_NAMES

_UKB_COLUMN = re.compile(r"^(?:f\.?)?(\d+)(?:[-_.]\d+(?:\.\d+)?)*$")


def manifests_dir() -> Path:
    """The folder of data manifests: `$CTRIP_MANIFESTS`, else `data_manifests/` of the checkout."""
    override = os.environ.get("CTRIP_MANIFESTS")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "data_manifests"


@functools.cache
def ukbiobank_manifest() -> dict[str, Any]:
    """The parsed UK Biobank field map (`data_manifests/ukbiobank.yaml`)."""
    path = manifests_dir() / "ukbiobank.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path}: the UK Biobank field map is missing")
    return yaml.safe_load(path.read_text())


def leaking_fields() -> frozenset[int]:
    """UK Biobank field ids that encode the targets."""
    return frozenset(int(f) for f in ukbiobank_manifest()["leaking_fields"])


def _normalized(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def leak_reason(column: str, field_ids: dict[str, int] | None = None) -> str | None:
    """Why `column` would leak the targets if used as a tabular input, or None if it does not.

    A column leaks when it is one of the 18 CPs (by name, ignoring case and punctuation), when
    `field_ids` maps it to a leaking UK Biobank field, or when its name is a showcase column of a
    leaking field (e.g. "24103-2.0", "f.22420.2.0").
    """
    cp_by_norm = {_normalized(cp): cp for cp in CP_NAMES}
    if _normalized(column) in cp_by_norm:
        return f"it is the cardiac phenotype {cp_by_norm[_normalized(column)]}"
    leaking = leaking_fields()
    if field_ids and column in field_ids and int(field_ids[column]) in leaking:
        return f"it maps to UK Biobank field {field_ids[column]}, which encodes the targets"
    match = _UKB_COLUMN.match(column)
    if match and int(match.group(1)) in leaking:
        return f"it is UK Biobank field {match.group(1)}, which encodes the targets"
    return None
