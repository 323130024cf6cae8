"""Training-step time of the reference baselines' networks at the default profile's shapes.

    .venv/bin/python benchmarks/bench_baselines.py [--threads 1] [--steps 15]

Times forward, backward and AdamW update of `ImageCNN` (a batch of 64 three-slice 64x64
localizers) with its inputs in channels-last memory, as `ImageCNN.forward` lays them out, and in
the plain contiguous layout, and of `ECGCNN` (64 ECGs of 12 x 2500 samples) as its 1 x k 2-D
layers in channels-last memory and as the same network in Conv1d layers, and the evaluation
forward pass per subject at batch 64 (as `fit_network` predicts) and 256. Prints the median
milliseconds per step; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from ctrip.baselines import ECGCNN, ImageCNN


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="a pipeline kernel uses 1")
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    images, ecgs = torch.randn(64, 3, 64, 64), torch.randn(64, 12, 2500)
    ecg = ECGCNN(12)
    print(f"{args.threads} thread(s), median of {args.steps} steps")
    for name, model, x in (
        ("ImageCNN, channels-last", ImageCNN(3), images),
        ("ImageCNN, contiguous", ContiguousImageCNN(3), images),
        ("ECGCNN, 2-D channels-last", ecg, ecgs),
        ("ECGCNN, Conv1d layers", ecg.as_conv1d(), ecgs),
    ):
        print(f"{name:26} batch {len(x):4d}  {step_time(model, x, args.steps):7.1f} ms/step")
    print("evaluation (as fit_network predicts, batch EVAL_BATCH = 64):")
    for name, model, x in (
        ("ImageCNN", ImageCNN(3), torch.randn(256, 3, 64, 64)),
        ("ECGCNN", ecg, torch.randn(256, 12, 2500)),
    ):
        for batch in (64, 256):
            print(f"{name:26} batch {batch:4d}  {eval_time(model, x[:batch]):7.3f} ms/subject")


if __name__ == "__main__":
    main()
