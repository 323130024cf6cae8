"""Which entries of a collated batch (CONTRACT batch dict) are a modality's model input."""

from __future__ import annotations

from typing import Any

TABULAR_KEYS = ("tab_num", "tab_num_missing", "tab_cat", "tab_cat_missing")


def modality_input(batch: dict[str, Any], modality: str) -> Any:
    """The model input of `modality` in a batch (a dict of four tensors for tabular)."""
    if modality == "tabular":
        return {k: batch[k] for k in TABULAR_KEYS}
    return batch[modality]
