"""What a run produced, recorded in `outputs.json` of its folder with paths relative to it.

A notebook works in a temporary folder that the runner renames when it finishes, so it records
relative paths; `load_outputs` turns them back into paths inside the run's final folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUTPUTS_FILE = "outputs.json"


def _relative(value: Any, root: Path) -> Any:
    if isinstance(value, dict):
        return {str(k): _relative(v, root) for k, v in value.items()}
    if isinstance(value, Path):
        return {"path": str(value.resolve().relative_to(root.resolve()))}
    return value


def _absolute(value: Any, root: Path) -> Any:
    if isinstance(value, dict):
        if set(value) == {"path"}:
            return root / value["path"]
        return {k: _absolute(v, root) for k, v in value.items()}
    return value


def save_outputs(out_dir: str | Path, **outputs: Any) -> None:
    """Record outputs (Paths inside `out_dir`, nested dicts of them, or plain values)."""
    root = Path(out_dir)
    path = root / OUTPUTS_FILE
    recorded = json.loads(path.read_text()) if path.exists() else {}
    recorded.update(_relative(outputs, root))
    path.write_text(json.dumps(recorded, indent=2))


def load_outputs(run_dir: str | Path) -> dict[str, Any]:
    """The outputs a finished run recorded, paths resolved inside `run_dir`."""
    path = Path(run_dir) / OUTPUTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: the run recorded no outputs (did it finish?)")
    return _absolute(json.loads(path.read_text()), Path(run_dir))


def stage3_checkpoint(run_dirs: str | Path | list[str | Path]) -> Path:
    """The checkpoint a method's Stage III run records as `checkpoint` (its largest fraction,
    first seed), from its run folder or, for a split sweep, from its runs' folders (one per
    fraction and seed, in sweep order)."""
    if isinstance(run_dirs, str | Path):
        return load_outputs(run_dirs)["checkpoint"]
    checkpoints: dict[str, Path] = {}
    for folder in run_dirs:
        checkpoints.update(load_outputs(folder)["checkpoints"])  # "<fraction>/<seed>" -> file
    if not checkpoints:
        raise ValueError("stage3_checkpoint: no Stage III run folders given")
    largest = max(float(key.split("/")[0]) for key in checkpoints)
    return next(path for key, path in checkpoints.items() if float(key.split("/")[0]) == largest)
