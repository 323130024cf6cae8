"""python -m ctrip.stages.launch: one training run from a plain script; two CPU processes
(DDP over gloo) through it give the single-process result within a stated tolerance.

Each epoch is one full batch of the 28 training subjects (28 in one process, 14 per rank in
two), without dropout or augmentation, so both average the same per-subject gradients. What
still differs is the regression head's BatchNorm: each rank normalizes by the statistics of its
own 14 subjects (SyncBatchNorm, which `ctrip.stages.train` turns on for several GPUs, is
GPU-only in torch). Measured (CPU, torch 2.13, Stage III tabular, 3 epochs): the first epoch's
training loss (before any update: BatchNorm alone) differs by 6.1e-4 of itself; the test
predictions by at most 0.12 reference SDs, against 0.39 between two seeds of the single
process. Tolerances: 2e-3 and 0.2 SD, and under half the seed-to-seed difference."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ctrip.config import make_config, run_config
from ctrip.stages.launch import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def write_config(path: Path, batch: int, trainer: dict) -> Path:
    config = make_config("smoke", {
        "stage3": {"max_epochs": 3, "batch_size": batch, "patience": 10, "dropout": 0.0,
                   "augment_ecg": False, "augment_rigid": False},
        "trainer": {"accelerator": "cpu", "threads": 1, **trainer},
    })  # fmt: skip
    path.write_text(json.dumps(run_config(config, "stage3", ["tabular"])))
    return path


def launch_command(cohort: Path, config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "ctrip.stages.launch", "stage3", "--cohort", str(cohort),
            "--config", str(config), "--out", str(out), "--modality", "tabular"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_one(tmp_path, tiny_cohort):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    single = write_config(tmp_path / "single.json", 28, {"devices": 1, "strategy": "auto"})
    ddp = write_config(tmp_path / "ddp.json", 14, {"devices": 2, "strategy": "ddp"})
    for out, seed in (("one", "0"), ("seed1", "1")):
        one = subprocess.run([*launch_command(tiny_cohort, single, tmp_path / out), "--seed", seed],
                             env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert one.returncode == 0, one.stderr[-2000:]
    port = str(free_port())
    ranks = [
        subprocess.Popen(launch_command(tiny_cohort, ddp, tmp_path / "two"), env={
            **env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "2",
            "RANK": str(rank), "LOCAL_RANK": str(rank), "NODE_RANK": "0"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in (0, 1)
    ]  # fmt: skip
    for rank in ranks:
        _, err = rank.communicate(timeout=300)
        assert rank.returncode == 0, err[-2000:]

    a = torch.load(tmp_path / "one" / "stage3-tabular.pt", weights_only=False)
    b = torch.load(tmp_path / "two" / "stage3-tabular.pt", weights_only=False)
    assert sorted(a) == sorted(b)  # the same checkpoint format
    assert a["n_train"] == b["n_train"] == 28
    assert b["config"]["trainer"]["strategy"] == "ddp"
    train = [abs(x - y) / abs(x) for x, y in zip(a["history"]["train_loss"],
                                                b["history"]["train_loss"], strict=True)]  # fmt: skip
    assert train[0] <= 2e-3, train
    p, q, r = (
        pd.read_parquet(tmp_path / d / "predictions.parquet") for d in ("one", "two", "seed1")
    )
    pred = [c for c in p if c.endswith("_pred")]
    sd = p[[c.replace("_pred", "_ref") for c in pred]].std().to_numpy()

    def worst(other: pd.DataFrame) -> float:
        return float(((p[pred] - other[pred]).abs().max().to_numpy() / sd).max())

    assert worst(q) <= 0.2 and worst(q) < worst(r) / 2, (worst(q), worst(r))


def test_bad_launch_inputs_are_one_line(tmp_path, tiny_cohort, capsys):
    config = write_config(tmp_path / "c.json", 8, {"devices": 1, "strategy": "auto"})
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "plain.yaml").write_text("a: 1\n")
    cases = [
        (["stage3", "--cohort", str(tiny_cohort), "--config", str(config), "--out", str(tmp_path)],
         "stage3: --modality is required"),
        (["stage1", "--cohort", str(tiny_cohort), "--config", str(tmp_path / "bad.json"),
          "--out", str(tmp_path), "--modality", "tabular"], "bad.json: not JSON/YAML"),
        (["stage1", "--cohort", str(tiny_cohort), "--config", str(tmp_path / "plain.yaml"),
          "--out", str(tmp_path), "--modality", "tabular"], "not a run's configuration"),
        (["stage1", "--cohort", str(tiny_cohort), "--config", str(tmp_path / "none.json"),
          "--out", str(tmp_path), "--modality", "tabular"], "none.json: cannot read it"),
        (["stage2", "--cohort", str(tiny_cohort), "--config", str(config), "--out", str(tmp_path),
          "--pairs", "localizer"], "--pairs 'localizer': expected"),
        (["stage2", "--cohort", str(tiny_cohort), "--config", str(config), "--out", str(tmp_path),
          "--pairs", "localizer-ecg", "--encoder", "ecg"], "--encoder 'ecg': expected"),
        (["stage1", "--cohort", str(tmp_path / "nowhere"), "--config", str(config),
          "--out", str(tmp_path), "--modality", "tabular"], "nowhere"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("trainer", "cuda", "expected"),
    [
        ({"accelerator": "gpu", "devices": 2, "num_nodes": 1}, True, True),
        ({"accelerator": "auto", "devices": 1, "num_nodes": 2}, True, True),
        ({"accelerator": "gpu", "devices": [0, 1], "num_nodes": 1}, True, True),
        ({"accelerator": "gpu", "devices": 1, "num_nodes": 1}, True, False),
        ({"accelerator": "cpu", "devices": 2, "num_nodes": 1}, True, False),
        ({"accelerator": "auto", "devices": 2, "num_nodes": 1}, False, False),
    ],
)
def test_batchnorm_is_synchronized_across_gpus_only(monkeypatch, trainer, cuda, expected):
    from ctrip.stages import train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert train._sync_batchnorm(trainer) is expected
