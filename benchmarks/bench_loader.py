"""Loader throughput: samples/s of CohortDataset through a DataLoader, per modality combination.

Writes a 2000-subject cohort of random arrays at the default profile's sizes (localizer and cine
64x64, ECG 12 x 2500) once into a temporary folder, then iterates one epoch of the training split
for every non-empty combination of localizer, cmr, ecg and tabular.

    .venv/bin/python benchmarks/bench_loader.py [--n 2000] [--image 64] [--ecg-t 2500] [--workers 0]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from ctrip.data.cohort import CohortWriter
from ctrip.data.dataset import CohortDataset
from ctrip.data.schema import CP_NAMES


def write_random_cohort(path: Path, n: int, image: int, ecg_t: int) -> Path:
    rng = np.random.default_rng(0)
    writer = CohortWriter(path, n)
    shapes = {"localizer": (3, image, image), "cmr": (3, image, image), "ecg": (12, ecg_t)}
    for name, shape in shapes.items():
        target = writer.array(name, shape)
        for start in range(0, n, 250):
            stop = min(n, start + 250)
            target[start:stop] = rng.standard_normal((stop - start, *shape), dtype=np.float32)
    table = pd.DataFrame(
        {
            "id": [f"B{i:05d}" for i in range(n)],
            "sex": rng.choice(["female", "male"], n),
            "age": rng.uniform(45, 82, n),
            "height": rng.normal(168, 9, n),
            "weight": rng.normal(78, 14, n),
            "smoking": rng.choice(["never", "previous", "current"], n),
            **{cp: rng.normal(60, 10, n) for cp in CP_NAMES},
        }
    )
    variants = {
        "T": {
            "numerical": ["age", "height", "weight"],
            "categorical": {"sex": ["female", "male"], "smoking": ["never", "previous", "current"]},
        }
    }
    return writer.finish(
        table, source="benchmark", tabular_variants=variants, ecg_sampling_rate_hz=250.0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--image", type=int, default=64)
    parser.add_argument("--ecg-t", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = write_random_cohort(Path(tmp) / "cohort", args.n, args.image, args.ecg_t)
        print(
            f"wrote a {args.n}-subject cohort in {time.perf_counter() - start:.1f} s "
            f"(images {args.image}x{args.image}, ECG 12x{args.ecg_t}, workers={args.workers})"
        )
        print(f"{'modalities':<34}{'samples':>9}{'seconds':>9}{'samples/s':>11}")
        for k in range(1, 5):
            for combo in itertools.combinations(("localizer", "cmr", "ecg", "tabular"), k):
                ds = CohortDataset(path, modalities=combo, split="train")
                loader = DataLoader(
                    ds,
                    batch_size=args.batch_size,
                    shuffle=True,
                    num_workers=args.workers,
                    generator=torch.Generator().manual_seed(0),
                )
                start = time.perf_counter()
                count = sum(len(batch["id"]) for batch in loader)
                seconds = time.perf_counter() - start
                print(f"{'+'.join(combo):<34}{count:>9}{seconds:>9.2f}{count / seconds:>11.0f}")


if __name__ == "__main__":
    main()
