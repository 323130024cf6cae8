"""The reference baselines' networks: training-step time at the default profile's shapes, and
the book's cheap image CNN against the standard small CNN on a cohort.

    .venv/bin/python benchmarks/bench_baselines.py [--threads 1] [--steps 15]
    nice -n 10 .venv/bin/python benchmarks/bench_baselines.py --threads 1 \\
        --cohort results/default/runs/cohort/cohort [--modality localizer] [--seeds 0]

Without --cohort: times forward, backward and AdamW update of `ImageCNN` (a batch of 64
three-slice 64x64 localizers) with its inputs in channels-last memory, as `ImageCNN.forward`
lays them out, and in the plain contiguous layout, of the standard small CNN
(`STANDARD_IMAGE_CNN`), and of `ECGCNN` (64 ECGs of 12 x 2500 samples) as its 1 x k 2-D layers
in channels-last memory and as the same network in Conv1d layers, and the evaluation forward
pass per subject at batch 64 (as `fit_network` predicts) and 256.

With --cohort: trains, on the full training split and each seed, the book's yardstick (the
cheap `ImageCNN`, the profile's epochs) and the standard small CNN (two 3x3 convolutions per
block, widths 32-64-128, batch norm, AdamW with a one-cycle schedule for the profile's
reference_baselines.standard_cnn_epochs, the validation-best weights) and prints each one's
test Pearson r per CP and its seconds. Prints figures; asserts nothing. (A book run trains the
standard one too for `reference_baselines.standard_cnn_seeds`: its Table 3d.)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

from ctrip.baselines import ECGCNN, STANDARD_IMAGE_CNN, BaselineData, ImageCNN, run_baseline
from ctrip.data.schema import CP_NAMES

REPORTED = ("LVM", "LVEDV", "RVEDV", "LVEF", "RVEF")


class ContiguousImageCNN(ImageCNN):
    """`ImageCNN` without the channels-last layout, for comparison."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.contiguous()))


def step_time(model: nn.Module, x: torch.Tensor, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)  # as fit_network
    times = []
    for i in range(steps + 3):
        start = time.perf_counter()
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= 3:  # the first steps warm up oneDNN's kernels
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def eval_time(model: nn.Module, x: torch.Tensor, repeats: int = 10) -> float:
    """Median milliseconds per subject of an evaluation forward pass of batch `x`."""
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(repeats + 3):
            start = time.perf_counter()
            model(x)
            if i >= 3:
                times.append(time.perf_counter() - start)
    model.train()
    return 1000 * statistics.median(times) / len(x)


def step_times(steps: int) -> None:
    images, ecgs = torch.randn(64, 3, 64, 64), torch.randn(64, 12, 2500)
    ecg = ECGCNN(12)
    for name, model, x in (
        ("ImageCNN, channels-last", ImageCNN(3), images),
        ("ImageCNN, contiguous", ContiguousImageCNN(3), images),
        ("standard small CNN", ImageCNN(3, **STANDARD_IMAGE_CNN), images),
        ("ECGCNN, 2-D channels-last", ecg, ecgs),
        ("ECGCNN, Conv1d layers", ecg.as_conv1d(), ecgs),
    ):
        print(f"{name:26} batch {len(x):4d}  {step_time(model, x, steps):7.1f} ms/step")
    print("evaluation (as fit_network predicts, batch EVAL_BATCH = 64):")
    for name, model, x in (
        ("ImageCNN", ImageCNN(3), torch.randn(256, 3, 64, 64)),
        ("ECGCNN", ecg, torch.randn(256, 12, 2500)),
    ):
        for batch in (64, 256):
            print(f"{name:26} batch {batch:4d}  {eval_time(model, x[:batch]):7.3f} ms/subject")


def cohort_comparison(args: argparse.Namespace) -> None:
    from ctrip.config import load_settings
    from ctrip.data.cohort import Cohort

    references = load_settings(args.profile)["reference_baselines"]
    epochs, standard_epochs = references["epochs"], references["standard_cnn_epochs"]
    data = BaselineData.load(Cohort.open(args.cohort), args.modality)
    y_test = data.targets["test"]
    variants = (
        (f"cheap (book), {epochs} epochs", {}, epochs),
        (f"standard small CNN, {standard_epochs} epochs", STANDARD_IMAGE_CNN, standard_epochs),
    )
    print(f"{args.modality}, {len(data.targets['train'])} training subjects, test r per CP")
    for name, image_cnn, n_epochs in variants:
        for seed in args.seeds:
            start = time.perf_counter()
            fit = run_baseline(data, args.modality, "cnn", seed=seed, epochs=n_epochs,
                               image_cnn=image_cnn)  # fmt: skip
            seconds = time.perf_counter() - start
            r = {cp: float(np.corrcoef(fit.test[:, j], y_test[:, j])[0, 1])
                 for j, cp in enumerate(CP_NAMES)}  # fmt: skip
            shown = " ".join(f"{cp} {r[cp]:.3f}" for cp in REPORTED)
            print(f"{name:32} seed {seed} | {shown} | best epoch {fit.chosen['best_epoch']} | "
                  f"{seconds:.0f} s", flush=True)  # fmt: skip
            print("    all CPs: " + " ".join(f"{cp} {v:.3f}" for cp, v in r.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="a pipeline kernel uses 1")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--cohort", default=None, help="compare the CNNs trained on this cohort")
    parser.add_argument("--profile", default="default", help="whose reference_baselines epochs")
    parser.add_argument("--modality", default="localizer", choices=("localizer", "cmr"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s)")
    if args.cohort:
        cohort_comparison(args)
    else:
        print(f"median of {args.steps} steps")
        step_times(args.steps)


if __name__ == "__main__":
    main()
