"""One check of the paper profile on this machine's accelerator, before a cluster is booked.

It writes a tiny cohort in the format `ctrip cohort import` produces (random arrays at the
paper's sizes: 224 px localizer and CMR, 12 x 5000 ECG at 500 Hz), builds every stage of the
paper profile on it (Stage I of each modality, Stage II with both pairs, Stage III of each
modality) with the project's own LightningModules, and takes a few AdamW steps of each:

  * on a GPU: in bf16 autocast; per stage samples/s, GFLOP/s of the step (torch's
    FlopCounterMode) against the bf16 matmul peak measured here, peak memory, and the largest
    batch that fits (doubling from the profile's batch size up to --max-batch);
  * without a GPU: says so, and makes the same pass on the CPU in fp32 (a dry pass: the
    stages build, the loss is finite, every tensor is where it should be) and exits 0.

Each stage runs on its own: one that fails is reported with its error and the others still
run. The exit code is 1 when any stage failed, else 0.

    .venv/bin/python benchmarks/gpu_check.py             # the paper's sizes (~5 min on a GPU)
    .venv/bin/python benchmarks/gpu_check.py --small     # small models and inputs (the CI test)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctrip.config import make_config, run_config, stage2_pairs  # noqa: E402
from ctrip.data.cohort import Cohort, write_cohort  # noqa: E402
from ctrip.data.datamodule import CohortDataModule  # noqa: E402
from ctrip.data.schema import CP_NAMES  # noqa: E402
from ctrip.losses import LocalizerCentricInfoNCE  # noqa: E402
from ctrip.models import RegressionHead  # noqa: E402
from ctrip.stages.build import new_encoder, new_mae  # noqa: E402
from ctrip.stages.modules import Stage1Module, Stage2Module, Stage3Module, adamw  # noqa: E402
from tests.factories import TABULAR_VARIANTS, tiny_arrays, tiny_table  # noqa: E402

# --small: models and inputs small enough for a CPU test in seconds (same code path).
SMALL_MODEL = {"dim": 32, "depth": 1, "heads": 2, "decoder_dim": 16, "decoder_depth": 1,
               "decoder_heads": 2}  # fmt: skip
STAGES = [("stage1", "localizer"), ("stage1", "cmr"), ("stage1", "ecg"), ("stage1", "tabular"),
          ("stage2", "localizer+ecg+tabular"), ("stage3", "localizer"), ("stage3", "cmr"),
          ("stage3", "ecg"), ("stage3", "tabular")]  # fmt: skip
PAIRS = [["localizer", "ecg"], ["localizer", "tabular"]]


@dataclass
class StageReport:
    name: str
    ok: bool = False
    error: str = ""
    losses: tuple[float, ...] = ()
    samples_per_s: float = math.nan
    gflop_per_s: float = math.nan
    peak_mib: float = math.nan
    largest_batch: int | str = "-"


def paper_config(small: bool, device: torch.device) -> dict[str, Any]:
    """The paper profile's training config, with the trainer of this check (and, with
    `small`, small models and ECG patches that fit the small ECG)."""
    overrides: dict[str, Any] = {"trainer": {"num_workers": 0, "threads": 0}}
    if device.type == "cpu":
        overrides["trainer"]["threads"] = 2
    if small:
        overrides["models"] = {m: dict(SMALL_MODEL) for m in ("localizer", "cmr", "ecg", "tabular")}
        overrides["models"]["localizer"]["patch_size"] = 8
        overrides["models"]["cmr"]["patch_size"] = 8
        overrides["models"]["ecg"]["patch_seconds"] = 0.2
    return make_config("paper", overrides)


def write_check_cohort(folder: Path, n: int, small: bool) -> Cohort:
    """A random cohort at the paper's input sizes (or small ones) in the imported format."""
    image, ecg_t, rate = (16, 200, 100.0) if small else (224, 5000, 500.0)
    path = write_cohort(folder / "cohort", tiny_table(n), tiny_arrays(n, image=image, ecg_t=ecg_t),
                        source="benchmarks/gpu_check.py", tabular_variants=TABULAR_VARIANTS,
                        ecg_sampling_rate_hz=rate)  # fmt: skip
    return Cohort.open(path)


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def grow(batch: Any, size: int) -> Any:
    """`batch` repeated along its first axis to `size` samples (the batch-size search needs
    batches larger than the tiny cohort)."""
    if isinstance(batch, torch.Tensor) and batch.dim() > 0:
        reps = -(-size // len(batch))
        return batch.repeat(reps, *([1] * (batch.dim() - 1)))[:size]
    if isinstance(batch, dict):
        return {k: grow(v, size) for k, v in batch.items()}
    return batch


def tensors_off_device(module: torch.nn.Module, batch: Any, device: torch.device) -> list[str]:
    """Names of the parameters, gradients, buffers and batch tensors not on `device`."""
    wrong = [f"parameter {n}" for n, p in module.named_parameters() if p.device.type != device.type]
    wrong += [f"gradient {n}" for n, p in module.named_parameters()
              if p.grad is not None and p.grad.device.type != device.type]  # fmt: skip
    wrong += [f"buffer {n}" for n, b in module.named_buffers() if b.device.type != device.type]
    flat = batch if isinstance(batch, dict) else {"input": batch}
    wrong += [f"batch {k}" for k, v in flat.items()
              if isinstance(v, torch.Tensor) and v.device.type != device.type]  # fmt: skip
    return wrong


def build(stage: str, what: str, config: dict[str, Any], cohort: Cohort) -> tuple[Any, Any]:
    """The LightningModule of one stage and its datamodule, as `ctrip.stages.train` builds them
    (Stage II and III encoders start from random weights: the check needs no checkpoints)."""
    modalities = what.split("+")
    if stage == "stage2":
        modalities = ["localizer", *stage2_pairs(PAIRS, False)[0]]
    run = run_config(config, stage, modalities, PAIRS if stage == "stage2" else None)
    section = run[stage]
    dm = CohortDataModule(cohort, modalities, batch_size=section["batch_size"], num_workers=0,
                          seed=0, drop_last=True)  # fmt: skip
    dm.setup()
    if stage == "stage1":
        mae = new_mae(what, run, cohort, dm.stats)
        return Stage1Module(mae, what, section, run.get("augment"), run.get("rigid")), dm
    if stage == "stage2":
        nets = {m: new_encoder(m, run, cohort, dm.stats) for m in modalities}
        criterion = LocalizerCentricInfoNCE(
            section["temperatures"], modalities[1:], "localizer", False,
            section["learn_temperature"], tuple(section["temperature_bounds"]),
        )  # fmt: skip
        return Stage2Module(nets, criterion, section, run.get("augment"), run.get("rigid")), dm
    encoder = new_encoder(what, run, cohort, dm.stats)
    head = RegressionHead(encoder.dim, len(CP_NAMES), section["hidden"], section["dropout"])
    module = Stage3Module(encoder, head, what, section, section["lr_encoder_scratch"])
    return module, dm


def step_loss(module: Any, batch: Any) -> torch.Tensor:
    """The training loss of one batch through the module's own training_step (its logging
    needs a Trainer, so its warning is silenced)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*self\.log.*")
        return module.training_step(batch, 0)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_steps(module: Any, optimizer: Any, batch: Any, steps: int, device: torch.device
                ) -> tuple[list[float], float]:  # fmt: skip
    """`steps` AdamW steps on `batch`; the losses and the mean seconds per step (after the
    first, which warms up kernels and allocations)."""
    losses, times = [], []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            loss = step_loss(module, batch)
        loss.backward()
        optimizer.step()
        sync(device)
        times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    timed = times[1:] or times
    return losses, sum(timed) / len(timed)


def step_flops(module: Any, batch: Any, device: torch.device) -> int:
    """Floating-point operations of one forward and backward pass (matmuls and attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, autocast(device):
        step_loss(module, batch).backward()
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def largest_batch(module: Any, batch: Any, start: int, limit: int, device: torch.device) -> int:
    """The largest batch size (doubling from `start`, at most `limit`) whose training step runs
    without running out of device memory; 0 when not even `start` fits."""
    fits, size = 0, start
    while size <= limit:
        try:
            with autocast(device):
                step_loss(module, grow(batch, size)).backward()
            module.zero_grad(set_to_none=True)
            fits, size = size, size * 2
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
    module.zero_grad(set_to_none=True)
    return fits


def check_stage(stage: str, what: str, config: dict[str, Any], cohort: Cohort,
                device: torch.device, args: argparse.Namespace) -> StageReport:  # fmt: skip
    report = StageReport(f"{stage} {what}")
    module, dm = build(stage, what, config, cohort)
    module = module.to(device).train()
    batch = to_device(next(iter(dm.train_dataloader())), device)
    # On a GPU the timed steps take the profile's batch size unless --batch says otherwise.
    size = args.batch or (config[stage]["batch_size"] if device.type == "cuda" else 0)
    batch = grow(batch, size) if size else batch
    n = len(batch["targets"])
    optimizer = adamw(module.optimizer_groups(), betas=(0.9, 0.95))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses, seconds = train_steps(module, optimizer, batch, args.steps, device)
    report.losses = tuple(losses)
    wrong = tensors_off_device(module, batch, device)
    if wrong:
        raise RuntimeError(f"not on {device.type}: {', '.join(wrong[:5])}")
    if not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"loss not finite: {losses}")
    report.samples_per_s = n / seconds
    report.gflop_per_s = step_flops(module, batch, device) / seconds / 1e9
    if device.type == "cuda":
        report.peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
        del optimizer
        start = max(n, config[stage]["batch_size"] // 4)
        report.largest_batch = largest_batch(module, batch, start, args.max_batch, device)
    report.ok = True
    return report


def matmul_peak(device: torch.device, seconds: float = 0.5) -> float:
    """Best GFLOP/s of square matmuls on `device` (bf16 on a GPU, fp32 on a CPU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    sizes = (4096, 8192) if device.type == "cuda" else (256, 512, 1024)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        a @ b
        sync(device)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            reps += 1
            if device.type == "cuda" and reps % 10 == 0:
                sync(device)
        sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def guarded(name: str, check: Callable[[], StageReport]) -> StageReport:
    """Run one stage's check; an exception becomes a failed report naming it."""
    try:
        return check()
    except Exception as error:  # noqa: BLE001 - a failing stage must not stop the others
        traceback.print_exc(file=sys.stderr)
        first = (str(error).splitlines() or [""])[0]
        return StageReport(name, error=f"{type(error).__name__}: {first}")
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def print_reports(reports: list[StageReport], peak: float, device: torch.device) -> None:
    print(f"\n{'stage':32s} {'status':6s} {'samples/s':>10s} {'GFLOP/s':>9s} {'% peak':>7s} "
          f"{'peak MiB':>9s} {'max batch':>9s}")  # fmt: skip
    for r in reports:
        if not r.ok:
            print(f"{r.name:32s} FAILED {r.error}")
            continue
        share = 100 * r.gflop_per_s / peak if peak else math.nan
        print(f"{r.name:32s} {'ok':6s} {r.samples_per_s:10.1f} {r.gflop_per_s:9.1f} {share:7.1f} "
              f"{r.peak_mib:9.0f} {r.largest_batch!s:>9s}")  # fmt: skip
    kind = "bf16" if device.type == "cuda" else "fp32"
    print(f"matmul peak on {device}: {peak:.0f} GFLOP/s ({kind})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small models and inputs (CI)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per stage")
    parser.add_argument("--subjects", type=int, default=24, help="subjects in the tiny cohort")
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help="batch size of the timed steps (0: the profile's on a GPU, "
        "the tiny cohort's first batch on a CPU)",
    )
    parser.add_argument(
        "--max-batch", type=int, default=4096, help="upper bound of the batch-size search (GPU)"
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="stages to check, e.g. 'stage1 localizer' (default: all)",
    )
    parser.add_argument("--cpu", action="store_true", help="the CPU pass even with a GPU")
    args = parser.parse_args(argv)
    names = [f"{s} {w}" for s, w in STAGES]
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        parser.error(f"--only: unknown stage(s) {unknown}; expected some of {names}")

    gpu = torch.cuda.is_available() and not args.cpu
    device = torch.device("cuda") if gpu else torch.device("cpu")
    if gpu:
        print(f"GPU: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    else:
        print("no GPU found (torch.cuda.is_available() is False): a CPU dry pass in fp32 only; "
              "no throughput, memory or batch size of a GPU is measured")  # fmt: skip
    config = paper_config(args.small, device)
    peak = matmul_peak(device, 0.5 if gpu else 0.2)
    wanted = [(s, w) for s, w in STAGES if args.only is None or f"{s} {w}" in args.only]
    reports = []
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        cohort = write_check_cohort(Path(tmp), args.subjects, args.small)
        for stage, what in wanted:
            print(f"{stage} {what} ...", flush=True)
            reports.append(
                guarded(f"{stage} {what}",
                        lambda s=stage, w=what: check_stage(s, w, config, cohort, device, args))
            )  # fmt: skip
    print_reports(reports, peak, device)
    failed = [r.name for r in reports if not r.ok]
    if failed:
        print(f"FAILED: {len(failed)} of {len(reports)} stages ({', '.join(failed)})")
        return 1
    print(f"all {len(reports)} stages ok on {device.type}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
