"""Bad inputs to `ctrip predict` (issue 12): malformed checkpoints, tiny, blank, NaN, empty and
out-of-range images, an --out that cannot be written. Each is one line naming the file and
field, before any work where it can be; with --skip-bad a bad file is skipped, named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ctrip.cli import main
from ctrip.io.errors import GeometryError, UnreadableFileError
from ctrip.io.importer import SubjectFiles
from ctrip.predict import check_checkpoint, checkpoint_error, prepare_inputs

SHAPE = (3, 16, 16)


def _valid() -> dict:
    return {
        "kind": "stage3",
        "modality": "localizer",
        "specs": {"localizer": {"dim": 8}},
        "encoders": {"localizer": {}},
        "head": {
            "spec": {"in_dim": 8, "out_dim": 18, "hidden": 0, "dropout": 0.0},
            "state_dict": {},
        },
        "stats": {},
        # the fields every Stage III checkpoint carries (ctrip.stages.checkpoint)
        "config": {},
        "seed": 0,
        "cohort": "cohort",
        "tabular_variant": "T",
        "history": {},
        "best_epoch": 0,
        "frozen": False,
        "fraction": 1.0,
        "init": "scratch",
    }


def _without(*keys: str) -> dict:
    ckpt = _valid()
    target = ckpt
    for key in keys[:-1]:
        target = target[key]
    del target[keys[-1]]
    return ckpt


MALFORMED = {
    "no head": (_without("head"), "field 'head'"),
    "head is text": ({**_valid(), "head": "weights"}, "field 'head'"),
    "no stats": (_without("stats"), "field 'stats'"),
    "no encoder spec": (_without("specs", "localizer"), "field specs.localizer"),
    "no encoder weights": (_without("encoders", "localizer"), "field encoders.localizer"),
    "no head spec": (_without("head", "spec"), "field head"),
    "no out_dim": (_without("head", "spec", "out_dim"), "field head.spec.out_dim"),
    "101 outputs": (
        {
            **_valid(),
            "head": {**_valid()["head"], "spec": {**_valid()["head"]["spec"], "out_dim": 101}},
        },
        "head.spec.out_dim is 101",
    ),
    "a list": ([1, 2], "not a C-TRIP checkpoint"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_checkpoints_name_file_and_field(case: str, tmp_path: Path, capsys) -> None:
    ckpt, expected = MALFORMED[case]
    with pytest.raises(ValueError, match=expected):
        check_checkpoint(ckpt, "model.pt")
    path = tmp_path / "model.pt"
    torch.save(ckpt, path)
    np.save(tmp_path / "x.npy", np.full((1, *SHAPE), 0.5, dtype=np.float32))
    code = main(["predict", "--checkpoint", str(path), "--localizer", str(tmp_path / "x.npy"),
                 "--preprocessed"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {path}: ") and expected in err.splitlines()[0]
    assert "Traceback" not in err


def test_model_building_errors_become_one_line() -> None:
    layer = torch.nn.Linear(4, 2)
    try:
        layer.load_state_dict(torch.nn.Linear(3, 2).state_dict())
    except RuntimeError as err:
        message = str(checkpoint_error("m.pt", err))
    assert "\n" not in message and message.startswith("m.pt: malformed checkpoint: size mismatch")
    assert "weight" in message
    assert str(checkpoint_error("m.pt", KeyError(101))) == (
        "m.pt: malformed checkpoint: field 101 is missing"
    )


def _npy(path: Path, values) -> Path:
    np.save(path, values)
    return path


def _one(path: Path, **kwargs):
    return prepare_inputs([SubjectFiles(path.stem, {"localizer": path})], SHAPE, **kwargs)


def test_raw_images_too_small_or_with_nan_are_named(tmp_path: Path) -> None:
    for side in (1, 2):
        tiny = _npy(tmp_path / f"tiny{side}.npy", np.ones((3, side, side)))
        with pytest.raises(GeometryError, match=f"tiny{side}.npy: images of"):
            _one(tiny)
    pixels = np.random.default_rng(0).uniform(size=(5, 32, 32))
    pixels[2, 10, 10] = np.nan
    with pytest.raises(GeometryError, match="nan.npy: the image holds NaN"):
        _one(_npy(tmp_path / "nan.npy", pixels))
    blank = _npy(tmp_path / "blank.npy", np.ones((5, 32, 32)))
    with pytest.raises(GeometryError, match="blank.npy: the cropped image is blank"):
        _one(blank)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.full((1, *SHAPE), 255.0, dtype=np.float32), "scaled to \\[0, 1\\]"),
        (np.full(SHAPE, -0.5, dtype=np.float32), "scaled to \\[0, 1\\]"),
        (np.full(SHAPE, "ab"), "not numeric"),
        (b"", "the file is empty"),
    ],
)
def test_preprocessed_arrays_are_checked(tmp_path: Path, values, expected: str) -> None:
    path = tmp_path / "pre.npy"
    if isinstance(values, bytes):
        path.write_bytes(values)
    else:
        np.save(path, values)
    with pytest.raises((GeometryError, UnreadableFileError), match=f"pre.npy: .*{expected}"):
        _one(path, preprocessed=True)


def test_skip_bad_skips_empty_and_broken_files_by_name(tmp_path: Path) -> None:
    good = _npy(tmp_path / "good.npy", np.random.default_rng(0).uniform(size=(5, 32, 32)))
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    truncated = tmp_path / "trunc.npy"
    truncated.write_bytes(good.read_bytes()[:200])
    subjects = [SubjectFiles(name, {"localizer": file})
                for name, file in (("empty", empty), ("good", good), ("trunc", truncated))]  # fmt: skip
    with pytest.warns(UserWarning, match="centred crop"):
        ids, inputs, problems = prepare_inputs(subjects, SHAPE, skip_bad=True)
    assert ids == ["good"] and inputs.shape == (1, *SHAPE)
    assert problems[0].startswith("empty: ") and "empty.npy" in problems[0]
    assert problems[1].startswith("trunc: ") and "trunc.npy" in problems[1]
    with pytest.raises(UnreadableFileError, match="empty.npy"):
        prepare_inputs(subjects, SHAPE)  # without --skip-bad the first bad file stops the batch


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ("missing/folder/cps.csv", "does not exist"),
        ("a_folder.csv", "is a folder"),
        ("cps.txt", "must end in .csv or .json"),
    ],
)
def test_output_path_is_checked_before_any_work(
    tmp_path: Path, out: str, expected: str, capsys
) -> None:
    (tmp_path / "a_folder.csv").mkdir()
    # the checkpoint does not exist: had the work started, that would be the error
    code = main(["predict", "--checkpoint", str(tmp_path / "none.pt"), "--localizer",
                 str(tmp_path), "--out", str(tmp_path / out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "none.pt" not in err


def test_crop_mm_is_checked(tmp_path: Path, capsys) -> None:
    code = main(["predict", "--checkpoint", str(tmp_path / "none.pt"), "--localizer",
                 str(tmp_path), "--crop-mm", "0"])  # fmt: skip
    assert code == 2 and "--crop-mm 0" in capsys.readouterr().err
