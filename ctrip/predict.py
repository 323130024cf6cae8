"""`ctrip predict`: the 18 cardiac phenotypes of new subjects from their localizer images.

    ctrip predict --checkpoint runs/stage3-localizer.pt --localizer subject01/localizer/
    ctrip predict --checkpoint C --localizer subjects/ --out cps.csv      # one subject per entry

PATH is a DICOM series (folder, zip or file), a NIfTI volume, a .npy array of slices
(S, H, W), or a subject's folder laid out as `ctrip cohort import generic` reads it
(`localizer/`, `localizer.zip|.dcm|.nii|.nii.gz|.npy`, optional `localizer_mask.*`); a folder
holding several of those (sub-folders or files, e.g. an import root) is a batch, one subject
per entry, named after it. Each subject is found and prepared by the importer's own code
(three consecutive transverse slices, heart crop, normalization, resizing to the checkpoint's
input size), with the field of view the training cohort was made with when its manifest is at
hand. `--preprocessed` takes .npy arrays already in cohort form: (3, H, W) or (N, 3, H, W).

The CPs are printed and, with --out, written as CSV (id, phenotype, value, unit; one row per
subject and phenotype) or JSON, with split-conformal intervals when the checkpoint's
calibration set is large enough for the level (else a warning says how many subjects it
needs). Checkpoints are read by `ctrip.stages.checkpoint` (weights only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from dataclasses import replace
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ctrip.data.schema import CP_NAMES, CP_UNITS
from ctrip.io.preprocess import DEFAULT_CROP_MM, HeartBox

if TYPE_CHECKING:
    import pandas as pd

    from ctrip.io.importer import SubjectFiles

PREPROCESSED_TOLERANCE = 1e-3  # model input is in [0, 1] up to float rounding


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", required=True, help="a Stage III localizer checkpoint (.pt)"
    )
    parser.add_argument(
        "--localizer", required=True,
        help="DICOM folder/zip/file, NIfTI file, .npy array or a subject folder in the "
        "importer's layout; a folder of these for a batch",
    )  # fmt: skip
    parser.add_argument("--out", help="write the CPs to FILE.csv or FILE.json")
    parser.add_argument(
        "--level", type=float, default=0.9,
        help="coverage of the split-conformal prediction intervals (default 0.9; 0 for none)",
    )  # fmt: skip
    parser.add_argument(
        "--mask", help="heart mask of a single subject (.nii.gz or .npy, localizer shape)"
    )
    parser.add_argument(
        "--heart-box", help="heart box r0,c0,r1,c1[,slice] in slice pixels (single subject)"
    )
    parser.add_argument(
        "--crop-mm", type=float,
        help="side of the centred crop without mask or box (default: the training cohort's, "
        f"else {DEFAULT_CROP_MM:g} mm)",
    )  # fmt: skip
    parser.add_argument(
        "--preprocessed", action="store_true",
        help="the .npy arrays are already model input: (3, H, W) or (N, 3, H, W) in [0, 1]",
    )  # fmt: skip
    parser.add_argument(
        "--skip-bad", action="store_true", help="in a batch, report and skip bad subjects"
    )
    parser.set_defaults(func=run)


def load_localizer_regressor(checkpoint: str | Path) -> tuple[Any, dict[str, Any]]:
    """The regressor of a Stage III localizer checkpoint and its raw dict; clear errors otherwise."""
    from ctrip.stages.checkpoint import read_checkpoint
    from ctrip.stages.inference import load_regressor

    path = Path(checkpoint)
    try:
        ckpt = read_checkpoint(path, kinds=("stage3",))
    except ValueError as err:
        raise ValueError(
            f"{err}; predict needs a Stage III (fine-tuned) localizer checkpoint"
        ) from None
    check_checkpoint(ckpt, path)
    try:
        return load_regressor(path), ckpt
    except (KeyError, TypeError, RuntimeError, ValueError, AttributeError, IndexError) as err:
        raise checkpoint_error(path, err) from err


# What a Stage III checkpoint must hold for `predict`: field -> (type, what it is).
_CHECKPOINT_FIELDS: dict[str, tuple[type, str]] = {
    "specs": (dict, "the encoder specifications by modality"),
    "encoders": (dict, "the encoder weights by modality"),
    "head": (dict, "the regression head (spec and state_dict)"),
    "stats": (dict, "the input and target normalization statistics"),
}
_HEAD_SPEC = ("in_dim", "out_dim", "hidden", "dropout")


def check_checkpoint(ckpt: Any, path: str | Path, modality: str = "localizer") -> None:
    """Raise a one-line `ValueError` naming `path` and the field when `ckpt` (a loaded dict)
    is not a usable Stage III checkpoint of `modality`; the model loader can then trust it."""
    kind = ckpt.get("kind") if isinstance(ckpt, dict) else None
    if kind != "stage3":
        what = f"a {kind} checkpoint" if kind else "not a C-TRIP checkpoint"
        raise ValueError(
            f"{path}: {what}; predict needs a Stage III (fine-tuned) localizer checkpoint"
        )
    if ckpt.get("modality") != modality:
        raise ValueError(
            f"{path}: a Stage III checkpoint of the {ckpt.get('modality')} model; predict needs "
            f"the {modality} model"
        )
    for name, (kind_of, what) in _CHECKPOINT_FIELDS.items():
        if not isinstance(ckpt.get(name), kind_of):
            found = "missing" if name not in ckpt else f"a {type(ckpt[name]).__name__}"
            raise ValueError(f"{path}: field {name!r} ({what}) is {found}")
    for name in ("specs", "encoders"):
        if not isinstance(ckpt[name].get(modality), dict):
            raise ValueError(f"{path}: field {name}.{modality} is missing or not a mapping")
    head = ckpt["head"]
    if not isinstance(head.get("spec"), dict) or not isinstance(head.get("state_dict"), dict):
        raise ValueError(f"{path}: field head needs a 'spec' and a 'state_dict' mapping")
    for key in _HEAD_SPEC:
        if key not in head["spec"]:
            raise ValueError(f"{path}: field head.spec.{key} is missing")
    if head["spec"]["out_dim"] != len(CP_NAMES):
        raise ValueError(
            f"{path}: field head.spec.out_dim is {head['spec']['out_dim']!r}; the model must "
            f"predict the {len(CP_NAMES)} phenotypes"
        )


def checkpoint_error(path: str | Path, err: Exception) -> ValueError:
    """One line naming the checkpoint and the field for an error raised while building its model."""
    if isinstance(err, KeyError):
        return ValueError(f"{path}: malformed checkpoint: field {err.args[0]!r} is missing")
    text = " ".join(str(err).split())
    mismatch = text.find("size mismatch for ")
    if mismatch >= 0:
        detail = text[mismatch:].split(". ")[0]
        return ValueError(f"{path}: malformed checkpoint: {detail}")
    return ValueError(f"{path}: malformed checkpoint ({type(err).__name__}: {text[:300]})")


def training_crop_mm(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> float:
    """The localizer field of view the checkpoint's training cohort was made with (recorded in
    the checkpoint, or, in an older one, read from the manifest of the cohort folder it names),
    else the default; a damaged value or manifest is a one-line error naming it."""
    import yaml

    from ctrip.io.errors import UnreadableFileError, check_regular_file
    from ctrip.io.preprocess import localizer_field_of_view_mm

    cohort = ckpt.get("cohort", "")
    if isinstance(cohort, dict):  # the field of view, recorded at training
        size = cohort.get("localizer_fov_mm")
        if not isinstance(size, int | float) or not 10.0 <= size <= 2000.0:
            raise ValueError(
                f"{path}: field cohort.localizer_fov_mm is {size!r}, not a size of 10-2000 mm; pass "
                "--crop-mm to predict without it"
            )
        return float(size)
    # a checkpoint written before the field of view was recorded names its cohort's folder
    manifest = Path(str(cohort)) / "manifest.yaml"
    if not manifest.exists():
        return DEFAULT_CROP_MM
    hint = "the checkpoint's field 'cohort' names it; pass --crop-mm to predict without it"
    try:
        document = yaml.safe_load(check_regular_file(manifest).read_text())
    except UnreadableFileError as err:
        raise ValueError(f"{err}; {hint}") from None
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
        reason = " ".join(str(err).split())[:200]
        raise ValueError(f"{manifest}: not a readable YAML manifest ({reason}); {hint}") from None
    if not isinstance(document, dict):
        raise ValueError(
            f"{manifest}: a YAML {type(document).__name__}, not a cohort manifest; {hint}"
        )
    try:
        return localizer_field_of_view_mm(document)
    except ValueError as err:
        raise ValueError(f"{manifest}: {err}; {hint}") from None


def find_subjects(path: str | Path) -> list[SubjectFiles]:
    """Each subject under PATH: PATH itself (a localizer, or one subject's folder in the
    importer's layout), or each entry of a batch folder (files, localizer folders, or subject
    folders in the importer's layout, as `ctrip cohort import generic` reads them)."""
    from ctrip.io.images import IMAGE_SUFFIXES, image_suffix

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if (subject := _subject_folder(path)) is not None:
        return [subject]
    if not path.is_dir():
        return [_localizer_subject(path.name.split(".")[0], path)]
    entries = sorted(path.iterdir())
    if any(
        e.is_file() and image_suffix(e) in ("", ".dcm") and e.name != "DICOMDIR" for e in entries
    ):
        return [_localizer_subject(path.name, path)]  # files directly inside: one DICOM series
    subjects = [
        _subject_folder(e) or _localizer_subject(e.name.split(".")[0], e)
        for e in entries
        if e.is_dir() or image_suffix(e) in IMAGE_SUFFIXES
    ]
    if not subjects:
        raise ValueError(f"{path}: no localizer found (DICOM, NIfTI or .npy)")
    return subjects


def _localizer_subject(subject_id: str, localizer: Path) -> SubjectFiles:
    from ctrip.io.importer import SubjectFiles

    return SubjectFiles(id=subject_id, files={"localizer": localizer})


def _subject_folder(folder: Path) -> SubjectFiles | None:
    """The subject in `folder` when it is laid out as the generic importer reads it (with the
    importer's own file finder and suffixes): `localizer/`, `localizer.zip`, `.dcm`, `.nii`,
    `.nii.gz` or `.npy`, and an optional `localizer_mask.*`; None for any other path."""
    from ctrip.io.generic import INPUT_SUFFIXES, MASK_SUFFIXES
    from ctrip.io.importer import find_input

    if not folder.is_dir():
        return None
    localizer = find_input(folder, "localizer", INPUT_SUFFIXES["localizer"])
    if localizer is None:
        return None
    subject = _localizer_subject(folder.name, localizer)
    if (mask := find_input(folder, "localizer_mask", MASK_SUFFIXES, folders=False)) is not None:
        subject.masks["localizer"] = mask
    return subject


def prepare_inputs(
    subjects: list[SubjectFiles],
    input_shape: tuple[int, ...],
    *,
    preprocessed: bool = False,
    mask: str | Path | None = None,
    box: HeartBox | None = None,
    crop_mm: float = DEFAULT_CROP_MM,
    skip_bad: bool = False,
) -> tuple[list[str], np.ndarray, list[str]]:
    """Model inputs (N, 3, H, W) for the subjects, their ids, and the problems of skipped ones.

    Raw images go through the importer's own `prepare_subject`, so a subject reads and
    becomes model input exactly as it would in `ctrip cohort import`."""
    from ctrip.io.errors import GeometryError, UnreadableFileError
    from ctrip.io.importer import ImportSettings, SubjectDropped, prepare_subject

    if len(subjects) > 1 and (mask or box):
        raise ValueError("--mask and --heart-box describe one subject; give a single localizer")
    size = input_shape[-1]
    if len(input_shape) != 3 or input_shape[0] != 3 or input_shape[1] != input_shape[2]:
        raise ValueError(
            f"the checkpoint expects input {input_shape}, not a (3, H, H) localizer stack"
        )
    settings = ImportSettings(modalities=("localizer",), image_size=size, crop_mm=crop_mm)
    ids, inputs, problems = [], [], []
    for subject in subjects:
        path = subject.files["localizer"]
        if mask:
            subject = replace(subject, masks={**subject.masks, "localizer": Path(mask)})
        if box:
            subject = replace(subject, boxes={**subject.boxes, "localizer": box})
        try:
            if preprocessed:
                array = _load_preprocessed(path, input_shape)
            else:
                try:
                    array = prepare_subject(subject, settings)["localizer"][None]
                except SubjectDropped as drop:
                    kind = GeometryError if drop.reason == "wrong geometry" else UnreadableFileError
                    raise kind(drop.detail) from drop
        except (UnreadableFileError, GeometryError) as err:
            if not skip_bad or len(subjects) == 1:
                raise
            problems.append(f"{subject.id}: {err}")
            continue
        ids += [subject.id] if len(array) == 1 else [f"{subject.id}_{i}" for i in range(len(array))]
        inputs.append(array)
    if not inputs:
        raise ValueError("no subject could be read:\n  " + "\n  ".join(problems))
    return ids, np.concatenate(inputs).astype(np.float32), problems


def _load_preprocessed(path: Path, input_shape: tuple[int, ...]) -> np.ndarray:
    from ctrip.io.errors import GeometryError, UnreadableFileError, check_regular_file

    if path.suffix.lower() != ".npy":
        raise UnreadableFileError(f"{path}: --preprocessed takes .npy arrays")
    check_regular_file(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        reason = "the file is empty" if path.is_file() and path.stat().st_size == 0 else err
        raise UnreadableFileError(f"{path}: not a readable .npy array ({reason})") from err
    if array.dtype.kind not in "biuf":
        raise UnreadableFileError(f"{path}: dtype {array.dtype} is not numeric")
    array = array[None] if array.ndim == 3 else array
    if array.ndim != 4 or tuple(array.shape[1:]) != tuple(input_shape):
        raise GeometryError(
            f"{path}: shape {list(np.shape(array))}; the checkpoint takes (3, H, W) = {list(input_shape)} "
            "or a batch (N, 3, H, W)"
        )
    if not np.isfinite(array).all():
        raise GeometryError(f"{path}: the array holds NaN or inf")
    low, high = float(array.min()), float(array.max())
    if low < -PREPROCESSED_TOLERANCE or high > 1 + PREPROCESSED_TOLERANCE:
        raise GeometryError(
            f"{path}: values {low:g} to {high:g}; --preprocessed arrays are model input, scaled "
            "to [0, 1] (pass the raw images without --preprocessed to have them scaled)"
        )
    return array.astype(np.float32)


def check_output_path(out: str | Path) -> Path:
    """Refuse an --out the run could not write, before any work: suffix, folder, not a folder."""
    path = Path(out)
    if path.suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"{path}: --out must end in .csv or .json")
    if path.is_dir():
        raise ValueError(f"{path}: --out is a folder; give a file name ending in .csv or .json")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{path}: the folder {folder} is not writable")
    return path


def predict_localizers(regressor: Any, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """CPs (N, 18) in CP units for model inputs (N, 3, H, W)."""
    from ctrip.stages.inference import predict_arrays

    return predict_arrays(regressor, inputs, batch_size)


def cps_table(ids: list[str], cps: np.ndarray) -> pd.DataFrame:
    """Long table: id, phenotype, value, unit."""
    import pandas as pd

    return pd.DataFrame(
        {
            "id": np.repeat(ids, len(CP_NAMES)),
            "phenotype": CP_NAMES * len(ids),
            "value": cps.reshape(-1),
            "unit": [CP_UNITS[cp] for cp in CP_NAMES] * len(ids),
        }
    )


def write_cps(path: str | Path, ids: list[str], cps: np.ndarray, checkpoint: str | Path,
              intervals: Any = None) -> Path:  # fmt: skip
    """CSV (long table; with `intervals`, columns low, high and level too) or JSON ({checkpoint,
    units, subjects: [{id, cps: {name: value}}]}, plus "intervals": {name: [low, high]})."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if intervals is None:
            cps_table(ids, cps).to_csv(path, index=False)
        else:
            from ctrip.analysis.screening import interval_table

            interval_table(intervals, ids, cps).to_csv(path, index=False)
    elif suffix == ".json":
        document = {
            "checkpoint": str(checkpoint),
            "units": {cp: CP_UNITS[cp] for cp in CP_NAMES},
            "subjects": [
                {"id": sid, "cps": {cp: float(v) for cp, v in zip(CP_NAMES, row)}}
                for sid, row in zip(ids, cps)
            ],
        }
        if intervals is not None:
            document["interval_level"] = intervals.level
            for subject, row in zip(document["subjects"], cps):
                subject["intervals"] = {cp: [float(b) for b in intervals.interval(cp, v)]
                                        for cp, v in zip(CP_NAMES, row)}  # fmt: skip
        path.write_text(json.dumps(document, indent=1))
    else:
        raise ValueError(f"{path}: --out must end in .csv or .json")
    return path


def format_cps(ids: list[str], cps: np.ndarray) -> str:
    """A text table: one row per phenotype, one column per subject."""
    width = max(10, *(len(s) for s in ids))
    header = f"{'phenotype':<10} {'unit':<6} " + " ".join(f"{s:>{width}}" for s in ids)
    rows = [
        f"{cp:<10} {CP_UNITS[cp]:<6} " + " ".join(f"{v:>{width}.2f}" for v in cps[:, j])
        for j, cp in enumerate(CP_NAMES)
    ]
    return "\n".join([header, *rows])


def run(args: argparse.Namespace) -> int:
    if args.out:
        check_output_path(args.out)
    if args.crop_mm is not None and not 10.0 <= args.crop_mm <= 2000.0:
        raise ValueError(f"--crop-mm {args.crop_mm:g} is outside 10-2000 mm")
    regressor, ckpt = load_localizer_regressor(args.checkpoint)
    crop_mm = args.crop_mm if args.crop_mm is not None else training_crop_mm(ckpt, args.checkpoint)
    subjects = find_subjects(args.localizer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids, inputs, problems = prepare_inputs(
            subjects, tuple(regressor.input_shape), preprocessed=args.preprocessed,
            mask=args.mask, box=HeartBox.parse(args.heart_box) if args.heart_box else None,
            crop_mm=crop_mm, skip_bad=args.skip_bad,
        )  # fmt: skip
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    cps = predict_localizers(regressor, inputs)
    if not np.isfinite(cps).all():
        raise ValueError(f"{args.checkpoint}: the model returned non-finite values")
    intervals = conformal_intervals(ckpt, args.level, args.checkpoint)
    if intervals is None:
        print(format_cps(ids, cps))
    else:
        from ctrip.analysis.screening import format_intervals

        print(format_intervals(intervals, ids, cps))
    if args.out:
        print(f"written to {write_cps(args.out, ids, cps, args.checkpoint, intervals)}")
    return 2 if problems else 0


def conformal_intervals(ckpt: dict[str, Any], level: float, path: str | Path) -> Any:
    """Split-conformal intervals at `level` from the validation residuals a Stage III checkpoint
    stores (None when `level` is 0 or the checkpoint predates them, with a warning)."""
    import pandas as pd

    from ctrip.analysis.screening import fit_conformal

    if level == 0:
        return None
    if not 0.5 <= level < 1:
        raise ValueError(f"--level {level:g}: give a coverage between 0.5 and 1 (or 0 for none)")
    calibration = ckpt.get("calibration")
    if not isinstance(calibration, dict) or not isinstance(calibration.get("residuals"), dict):
        print(f"warning: {path}: no calibration residuals in this checkpoint; no intervals",
              file=sys.stderr)  # fmt: skip
        return None
    residuals = calibration["residuals"]
    missing = [cp for cp in CP_NAMES if cp not in residuals]
    if missing:
        raise ValueError(f"{path}: field calibration.residuals lacks {missing}")
    for cp in CP_NAMES:
        values = residuals[cp]
        if not (isinstance(values, list | tuple) and values and all(
            isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in values
        )):  # fmt: skip
            shown = repr(values) if len(repr(values)) < 40 else f"a {type(values).__name__}"
            raise ValueError(
                f"{path}: field calibration.residuals.{cp} is {shown}, not a list of finite numbers"
            )
    counts = sorted({len(residuals[cp]) for cp in CP_NAMES})
    if len(counts) > 1:
        raise ValueError(
            f"{path}: field calibration.residuals holds {counts[0]} to {counts[-1]} values per "
            "phenotype; each holds one per calibration subject"
        )
    needed = calibration_size_needed(level)
    if counts[0] < needed:
        n = counts[0]
        print(f"warning: {path}: no {level:.0%} intervals: split conformal needs at least "
              f"{needed} calibration subjects for that level and this checkpoint has {n} (they "
              f"allow --level {math.floor(100 * n / (n + 1)) / 100:g} at most); predictions "
              "without intervals", file=sys.stderr)  # fmt: skip
        return None
    frame = pd.DataFrame({f"{cp}_pred": residuals[cp] for cp in CP_NAMES})
    for cp in CP_NAMES:
        frame[f"{cp}_ref"] = 0.0
    frame["split"] = calibration.get("split", "val")
    return fit_conformal(frame, level=level, split=None)


def calibration_size_needed(level: float) -> int:
    """The fewest calibration subjects for which split-conformal intervals at `level` are
    finite, by the rule `conformal_quantile` applies (k = ceil((n + 1) level) <= n, so about
    level / (1 - level): 9 for 90%, 19 for 95%)."""
    from ctrip.analysis.screening import conformal_quantile

    n = max(1, math.floor(level / (1.0 - level)) - 1)  # at most the answer
    while not math.isfinite(conformal_quantile(np.zeros(n), level)):
        n += 1
    return n
