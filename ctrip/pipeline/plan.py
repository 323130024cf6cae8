"""From the settings to an ordered list of runs, each with its full, resolved parameters.

The settings (`ctrip.config.load_settings`: experiments, profile, `--cohort`,
`--set`, all checked) expand here: each Table 2 method into the Stage I runs its encoders need,
one Stage II run (if it is aligned) and one Stage III run that sweeps fractions and seeds (with
`sweep.split`, one Stage III run per fraction and seed); the table and figure notebooks depend
on the Stage III runs they read and receive each method's run folder (or its list of folders,
split). Each training run receives `run_config(...)`: exactly the configuration it reads,
resolved once, which the notebook trains with and the checkpoint stores. Methods whose modalities the cohort lacks (e.g. CMR_sup on a
cohort without CMR) are left out and named (`methods_for_cohort`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ctrip.config import run_config

# The order of the steps in a plan (and in the book), then insertion order within a step.
STEPS = ("cohort", "data_card", "stage1", "stage2", "stage3", "analysis")


@dataclass
class Run:
    """One unit of cached work: a notebook executed with parameters (or the cohort synthesis).

    `parameters` are hashed; `inputs` name other runs (nested dict/list of run names) and reach
    the notebook as the folders of those runs; `needs` are every run this one depends on;
    `threads` is the CPU thread count of its kernel (hashed too: it can change the numbers).
    `early`: a long run off the Stage II chain (the reference baselines, which need only the
    cohort; a Stage III run from a Stage I encoder), started as soon as it can be, so that it
    overlaps the chain instead of leaving a core idle at the end (not hashed).
    """

    name: str
    notebook: str | None  # file name in notebooks/, None for the cohort synthesis
    parameters: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)
    needs: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)  # files copied to the results folder
    step: str = "analysis"
    threads: int = 1
    early: bool = False


def slug(name: str) -> str:
    """A file-name-safe run suffix for a method name: "L+E+Tp" -> "L_E_Tp"."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")


def _stage1_name(modality: str, tabular_variant: str) -> str:
    return f"stage1_tabular_{tabular_variant}" if modality == "tabular" else f"stage1_{modality}"


def cohort_facts(settings: dict) -> dict[str, Any]:
    """What the plan needs to know of the cohort: its modalities, tabular variants and whether
    it is simulated (read from an existing cohort's manifest; a simulated one has them all)."""
    path = settings["cohort"].get("path")
    if not path:
        return {"modalities": ["localizer", "cmr", "ecg", "tabular"], "variants": ["T", "Tp"],
                "simulated": True}  # fmt: skip
    manifest_file = Path(path) / "manifest.yaml"
    if not manifest_file.is_file():
        raise FileNotFoundError(f"cohort.path: {manifest_file} does not exist (not a cohort)")
    manifest = yaml.safe_load(manifest_file.read_text()) or {}
    variants = list(manifest.get("tabular_variants") or {})
    modalities = list(manifest.get("arrays") or {}) + (["tabular"] if variants else [])
    return {
        "modalities": modalities,
        "variants": variants,
        "simulated": manifest.get("source") == "synthetic",
    }


def cohort_parameters(cohort: dict[str, Any]) -> dict[str, Any]:
    """What the cohort run reads: an existing cohort's absolute path (`--cohort X` and
    `--set cohort.path=X` alike), or the simulation's sizes and seed without a path."""
    if cohort.get("path"):
        return {"path": str(Path(cohort["path"]).resolve())}
    return {k: v for k, v in cohort.items() if k != "path"}


def paper_rows(methods: dict[str, dict | None]) -> list[str]:
    """The methods that are rows of the paper's Table 2; a control of this companion's has
    `paper: false` and joins only the comparisons."""
    return [name for name, spec in methods.items() if (spec or {}).get("paper", True)]


def methods_for_cohort(settings: dict) -> tuple[dict[str, dict], dict[str, str]]:
    """The methods this cohort can run (each merged over `method_defaults`), and those left
    out with the reason."""
    facts = cohort_facts(settings)
    methods, left_out = {}, {}
    for name, spec in settings["methods"].items():
        spec = {**settings.get("method_defaults", {}), **(spec or {})}
        if spec["encoder"] == "stage2" and not spec.get("pairs"):
            raise ValueError(f"methods.{name}: an aligned (stage2) method needs pairs")
        needed = {spec["modality"], *(m for pair in spec.get("pairs") or [] for m in pair)}
        missing = sorted(needed - set(facts["modalities"]))
        variant = spec.get("tabular_variant", "T")
        if missing:
            left_out[name] = f"the cohort has no {', '.join(missing)}"
        elif "tabular" in needed and variant not in facts["variants"]:
            left_out[name] = f"the cohort has no tabular variant {variant}"
        else:
            methods[name] = spec
    return methods, left_out


def build_plan(settings: dict) -> list[Run]:
    """Expand checked settings into runs, in an order where every run follows what it needs."""
    nb = settings["notebooks"]
    seed = int(settings.get("seed", 0))
    config = settings["config"]
    threads = int(config["trainer"]["threads"])
    facts = cohort_facts(settings)
    methods, _ = methods_for_cohort(settings)

    runs: dict[str, Run] = {}

    def add(run: Run) -> Run:
        run.needs = ["cohort", *_run_names(run.inputs)] if run.name != "cohort" else []
        run.threads = threads
        runs[run.name] = run
        return run

    add(Run("cohort", None, {"cohort": cohort_parameters(settings["cohort"])}, step="cohort"))
    add(Run("data_card", nb["data_card"], {"simulated": facts["simulated"]},
            publish=["figures"], step="data_card"))  # fmt: skip

    def stage1(modality: str, variant: str) -> str:
        name = _stage1_name(modality, variant)
        if name not in runs:
            params = {"modality": modality, "tabular_variant": variant, "seed": seed}
            params["config"] = run_config(config, "stage1", [modality])
            add(Run(name, nb["stage1"], params, publish=["figures"], step="stage1"))
        return name

    stage3_runs: dict[str, str | list[str]] = {}
    for name, spec in methods.items():
        variant = spec.get("tabular_variant", "T")
        init: str | None = None
        if spec["encoder"] == "stage1":
            init = stage1(spec["modality"], variant)
        elif spec["encoder"] == "stage2":
            pairs = [list(p) for p in spec["pairs"]]
            encoders = {m: stage1(m, variant) for pair in pairs for m in pair}
            params = {"pairs": pairs, "tabular_variant": variant, "seed": seed}
            params["config"] = run_config(config, "stage2", ["localizer"], pairs)
            init = f"stage2_{slug(name)}"
            add(Run(init, nb["stage2"], params, inputs={"encoders": encoders}, step="stage2"))
        sweep_names = []
        for suffix, fractions, seeds in sweep_runs(settings["sweep"]):
            params = {
                "method": name,
                "modality": spec["modality"],
                "encoder": spec["encoder"],
                "tabular_variant": variant,
                "frozen": bool(spec.get("frozen", False)),
                "fractions": fractions,
                "seeds": seeds,
                "config": run_config(config, "stage3", [spec["modality"]]),
            }
            sweep_names.append(f"stage3_{slug(name)}{suffix}")
            # From a Stage I encoder (the control), the run waits on no Stage II run: it
            # overlaps them.
            add(Run(sweep_names[-1], nb["stage3"], params, inputs={"init": init}, step="stage3",
                    early=spec["encoder"] == "stage1"))  # fmt: skip
        stage3_runs[name] = sweep_names if settings["sweep"].get("split") else sweep_names[0]

    sweep = settings["sweep"]
    add(
        Run(
            "reference_baselines",
            nb["reference_baselines"],
            {
                "modalities": [
                    m for m in ("localizer", "cmr", "ecg", "tabular") if m in facts["modalities"]
                ],  # fmt: skip
                "fractions": [float(f) for f in sweep["fractions"]],
                "seeds": [int(s) for s in sweep["seeds"]],
                **settings["reference_baselines"],
            },
            step="stage3",
            early=True,
        )
    )

    figures = settings["figures"]
    labels = {name: spec.get("label", name) for name, spec in methods.items()}
    paper_labels = {name: labels[name] for name in paper_rows(methods)}
    inputs = {"stage3": stage3_runs, "references": "reference_baselines"}
    modalities = {name: spec["modality"] for name, spec in methods.items()}
    table = {"methods": labels, "modalities": modalities, "simulated": facts["simulated"],
             **settings["table2"]}  # fmt: skip
    # Table 2 keeps the paper's rows; Table 4b sets the aligned rows against the control.
    table["controls"] = [name for name in labels if name not in paper_labels]
    table["control"] = table.get("control") if table.get("control") in methods else ""
    table["aligned"] = [name for name, spec in methods.items() if spec["encoder"] == "stage2"]
    add(
        Run(
            "table2",
            nb["table2"],
            table,
            inputs={**inputs, "data_card": "data_card"},
            publish=[
                "table2.csv",
                "table2_cp18.csv",
                "oracle.csv",
                "table2_seeds.csv",
                "yardstick.csv",
                "yardstick_differences.csv",
                "loa_differences.csv",
                "paired_differences.csv",
                "control_differences.csv",
                "standard_cnn.csv",
            ],  # fmt: skip
        )
    )
    add(
        Run(
            "fraction_curves",
            nb["fraction_curves"],
            # its readings (the key result among them) set the curves beside Table 2's tables
            {
                "methods": labels,
                **figures["fraction_curves"],
                "simulated": facts["simulated"],
                **{role: figures["attention"][role] for role in ("baseline", "method")},
            },  # fmt: skip
            inputs={**inputs, "table2": "table2"},
            publish=["pearson_vs_fraction.csv", "figures"],
        )
    )
    add(
        Run(
            "screening",
            nb["screening"],
            {"methods": paper_labels, **settings["screening"]},
            inputs={"stage3": stage3_runs},
            publish=["coverage.csv", "screening.csv", "abnormal_counts.csv", "figures"],
        )
    )
    attention = dict(figures["attention"])
    for role in ("baseline", "method"):
        if attention[role] not in stage3_runs:
            raise ValueError(f"figures.attention.{role}: {attention[role]!r} is not a method")
    add(
        Run(
            "attention_maps",
            nb["attention_maps"],
            {**attention, "labels": labels},
            inputs={
                "stage3": {m: stage3_runs[m] for m in (attention["baseline"], attention["method"])}
            },
            publish=["figures"],
        )
    )
    umap = dict(figures["umap"])
    spec = methods.get(umap["method"])
    if spec is None or spec["encoder"] != "stage2":
        raise ValueError(
            f"figures.umap.method: {umap['method']!r} is not an aligned (stage2) method"
        )
    variant = spec.get("tabular_variant", "T")
    before = {m: stage1(m, variant) for pair in spec["pairs"] for m in pair}
    add(
        Run(
            "umaps",
            nb["umaps"],
            {
                **umap,
                "pairs": [list(p) for p in spec["pairs"]],
                "simulated": facts["simulated"],
                "labels": labels,
            },  # fmt: skip
            inputs={
                "before": before,
                "after": f"stage2_{slug(umap['method'])}",
                "stage2": {n: n for n, r in runs.items() if r.step == "stage2"},
            },  # fmt: skip
            publish=["figures"],
        )
    )
    return _ordered(runs)


def sweep_runs(sweep: dict[str, Any]) -> list[tuple[str, list[float], list[int]]]:
    """The Stage III runs of one method: (run-name suffix, fractions, seeds) of each. One run
    sweeps every fraction and seed; with `sweep.split`, each fraction-and-seed is its own run
    (so that a cluster spreads them), in the order the one run trains them."""
    fractions = [float(f) for f in sweep["fractions"]]
    seeds = [int(s) for s in sweep["seeds"]]
    if not sweep.get("split"):
        return [("", fractions, seeds)]
    return [(f"_fraction{f:g}_seed{s}", [f], [s]) for f in fractions for s in seeds]


def _run_names(inputs: Any) -> list[str]:
    if isinstance(inputs, dict):
        return [n for v in inputs.values() for n in _run_names(v)]
    if isinstance(inputs, list):
        return [n for v in inputs for n in _run_names(v)]
    return [inputs] if isinstance(inputs, str) else []


def _ordered(runs: dict[str, Run]) -> list[Run]:
    """Topological order, keeping insertion order among independent runs."""
    done: list[str] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in stack:
            raise ValueError(f"dependency cycle: {' -> '.join((*stack, name))}")
        if name not in runs:
            raise ValueError(f"run {stack[-1]!r} needs {name!r}, which is not in the plan")
        for need in runs[name].needs:
            visit(need, (*stack, name))
        done.append(name)

    for name in sorted(runs, key=lambda n: STEPS.index(runs[n].step)):  # stable
        visit(name, ())
    return [runs[name] for name in done]


def dependents(plan: list[Run], name: str) -> set[str]:
    """Every run that (transitively) needs `name`."""
    out: set[str] = set()
    for run in plan:  # plan is topologically ordered
        if name in run.needs or out.intersection(run.needs):
            out.add(run.name)
    return out
