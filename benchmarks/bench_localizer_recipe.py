"""What makes the localizer transformer learn: Stage III test r and Stage II alignment per recipe.

Simulates a cohort once per (subjects, seed, image size, field of view) into a cache folder,
then runs the library's own stages (`ctrip.stages.train`) with config overrides and prints, per
configuration, the test Pearson r of LVM, LVEDV, RVEDV, LVEF and RVEF (and of every CP) and the
seconds each stage took (Stage III also in CPU seconds of the process, which a shared machine's
load changes less than wall time).

Modes:
- sup:   L_sup, Stage III on a randomly initialized localizer encoder.
- mae:   Stage I (localizer MAE) then Stage III fine-tuning from it.
- align: Stage I for localizer, ECG and tabular, Stage II (L-E and L-T), its retrieval recall@k,
         chance level, temperatures and participation ratio per modality on the test split, then
         Stage III fine-tuning of the aligned localizer encoder.

    nice -n 10 .venv/bin/python benchmarks/bench_localizer_recipe.py --field heart \\
        --set models.localizer.stem=hmlp --set models.localizer.pool=mean \\
        --set stage3.max_epochs=20 --mode sup

`--summary LOG` prints one line per recipe of a `--log` file (mean over its seeds): the evidence
for the default profile's Stage III recipe is

    nice -n 10 .venv/bin/python benchmarks/bench_localizer_recipe.py --cohort COHORT --threads 1 \\
        --seed S [--modality M] [--set stage3.KEY=VALUE ...] --log recipe.jsonl
    .venv/bin/python benchmarks/bench_localizer_recipe.py --summary recipe.jsonl

Timings depend on the load of the machine (it is shared): compare runs made side by side. On
an oversubscribed CPU, `--threads 1` is several times faster than 2 threads (spin waits).
Checkpoints go to a temporary folder and are removed at the end of each run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ctrip.config import make_config, set_key
from ctrip.data.schema import CP_NAMES
from ctrip.data.synth.generate import synthesize_cohort
from ctrip.data.synth.sizes import SynthSizes
from ctrip.stages import train

REPORTED = ("LVM", "LVEDV", "RVEDV", "LVEF", "RVEF")


def cohort_path(args: argparse.Namespace) -> Path:
    if args.cohort:
        return Path(args.cohort)
    sizes = SynthSizes(
        image_size=args.image_size,
        cmr_size=args.image_size,
        localizer_field=args.field,
        localizer_fov_mm=None if args.field == "thorax" else args.fov_mm,
    )
    name = f"n{args.subjects}-s{args.seed}-{args.image_size}px-{args.field}"
    if args.field == "heart":
        name += f"{args.fov_mm:g}mm"
    path = Path(args.cache) / name
    if not (path / "manifest.yaml").is_file():
        t0 = time.perf_counter()
        synthesize_cohort(path, args.subjects, args.seed, sizes, progress=False, overwrite=True)
        print(f"simulated {path} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def test_r(predictions, cps=REPORTED) -> dict[str, float]:
    test = predictions[predictions["split"] == "test"]
    return {cp: float(np.corrcoef(test[f"{cp}_pred"], test[f"{cp}_ref"])[0, 1]) for cp in cps}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ctrip.analysis.alignment import alignment_table
    from ctrip.data.cohort import Cohort
    from ctrip.stages.checkpoint import read_checkpoint
    from ctrip.stages.inference import embed

    config = make_config(args.profile)
    for item in args.set:
        key, _, value = item.partition("=")
        config = set_key(config, key, yaml.safe_load(value))
    config["trainer"]["threads"] = args.threads
    cohort = Cohort.open(cohort_path(args))
    result: dict[str, Any] = {"mode": args.mode, "field": args.field, "set": args.set,
                              "modality": args.modality, "seed": args.seed,
                              "init": args.init}  # fmt: skip
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        init = args.init  # mode sup: None (from scratch) or a Stage I / II checkpoint
        if args.mode in ("mae", "align"):
            modalities = ("localizer",) if args.mode == "mae" else ("localizer", "ecg", "tabular")
            stage1 = {}
            for m in modalities:
                t0 = time.perf_counter()
                stage1[m] = train.run_stage1(cohort, m, config, out / f"s1-{m}", seed=args.seed)
                seconds[f"stage1_{m}"] = time.perf_counter() - t0
            init = stage1["localizer"]
        if args.mode == "align":
            t0 = time.perf_counter()
            pairs = [("localizer", "ecg"), ("localizer", "tabular")]
            init = train.run_stage2(cohort, pairs, stage1, config, out / "s2", seed=args.seed)
            seconds["stage2"] = time.perf_counter() - t0
            embedded = {m: embed(init, cohort, m, "test", projected=True) for m in modalities}
            retrieval, participation = alignment_table(embedded, pairs)
            result["alignment"] = {
                "retrieval": retrieval.to_dict("records"),
                "participation_ratio": participation.set_index("modality")[
                    "participation_ratio"
                ].to_dict(),
                "temperatures": read_checkpoint(init)["temperatures"],
            }
            result["stage2_best_epoch"] = read_checkpoint(init)["best_epoch"]
        t0, cpu0 = time.perf_counter(), time.process_time()
        res = train.run_stage3(
            cohort, args.modality, init, config, out / "s3", seed=args.seed,
            fraction=args.fraction, tabular_variant=args.tabular_variant,
        )  # fmt: skip
        seconds["stage3"] = time.perf_counter() - t0
        seconds["stage3_cpu"] = time.process_time() - cpu0
        ckpt = read_checkpoint(res.checkpoint)
        result.update(
            n_train=ckpt["n_train"],
            stage3_best_epoch=ckpt["best_epoch"],
            stage3_epochs_run=len(ckpt["history"]["epoch"]),
            r=test_r(res.predictions),
            r_all=test_r(res.predictions, CP_NAMES),
            seconds={k: round(v, 1) for k, v in seconds.items()},
        )
    return result


def summary(log: str) -> None:
    """One line per recipe of a --log file: its seeds, mean test r per reported CP, mean
    best epoch and mean Stage III seconds (wall; CPU where logged)."""
    runs = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for result in runs:
        mode = result["mode"] + (
            " from " + Path(result["init"]).parent.name if result.get("init") else ""
        )
        key = (
            result.get("modality", "localizer"),
            mode,
            result["n_train"],
            " ".join(result["set"]),
        )
        groups.setdefault(key, []).append(result)
    print(f"{'modality':9} {'mode':5} {'train':>5} {'seeds':6} "
          + " ".join(f"{cp:>6}" for cp in REPORTED)
          + "  best  wall s  cpu s  recipe (--set over the profile)")  # fmt: skip
    for (modality, mode, n_train, sets), results in groups.items():
        seeds = ",".join(str(r.get("seed", 0)) for r in results)
        r = " ".join(f"{np.mean([x['r'][cp] for x in results]):6.3f}" for cp in REPORTED)
        best = np.mean([x["stage3_best_epoch"] for x in results])
        wall = np.mean([x["seconds"]["stage3"] for x in results])
        cpu = [x["seconds"]["stage3_cpu"] for x in results if "stage3_cpu" in x["seconds"]]
        cpu_text = f"{np.mean(cpu):6.0f}" if cpu else "     -"
        print(f"{modality:9} {mode:5} {n_train:5d} {seeds:6} {r}  {best:4.1f} {wall:7.0f} {cpu_text}  "
              f"{sets or '(profile)'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("sup", "mae", "align"), default="sup")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--subjects", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--field", choices=("heart", "thorax"), default="heart")
    parser.add_argument("--fov-mm", type=float, default=140.0)
    parser.add_argument("--modality", choices=("localizer", "cmr", "ecg", "tabular"),
                        default="localizer", help="Stage III input (mode sup: E_sup, ...)")  # fmt: skip
    parser.add_argument("--init", default=None,
                        help="mode sup: Stage III from this Stage I / II checkpoint")  # fmt: skip
    parser.add_argument("--tabular-variant", default="T", help="T, or Tp (the L+E+Tp ablation)")
    parser.add_argument("--fraction", type=float, default=None, help="Stage III training fraction")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cohort", default=None, help="an existing cohort folder (no simulation)")
    parser.add_argument("--cache", default="/tmp/ctrip-bench-cohorts")
    parser.add_argument("--set", action="append", default=[], help="config key=value (YAML)")
    parser.add_argument("--log", default=None, help="append the result as a JSON line here")
    parser.add_argument("--summary", default=None, help="print a --log file's recipes; no run")
    args = parser.parse_args()
    if args.summary:
        summary(args.summary)
        return
    if args.init and args.mode != "sup":
        parser.error(f"--mode {args.mode} makes its own initialization; --init needs --mode sup")
    if args.modality != "localizer" and args.mode != "sup":
        parser.error(f"--mode {args.mode} pre-trains the localizer; --modality needs --mode sup")
    t0 = time.perf_counter()
    result = run(args)
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    r = " ".join(f"{cp} {v:.3f}" for cp, v in result["r"].items())
    print(f"{args.mode} {args.field} {' '.join(args.set)} | n_train {result['n_train']} "
          f"best epoch {result['stage3_best_epoch']}/{result['stage3_epochs_run']} | {r} | "
          f"{result['seconds']} s")  # fmt: skip
    print("  test r per CP: " + " ".join(f"{cp} {v:.3f}" for cp, v in result["r_all"].items()))
    if "alignment" in result:
        a = result["alignment"]
        print(f"  retrieval {a['retrieval']}")
        print(f"  participation ratio {a['participation_ratio']} temperatures {a['temperatures']}")
    if args.log:
        with open(args.log, "a") as f:
            f.write(json.dumps(result, default=float) + "\n")


if __name__ == "__main__":
    main()
