"""From a profile, the experiments file and `--set` overrides to an ordered list of runs.

The settings tree is `experiments.yaml` deep-merged with `profiles/<profile>.yaml`, then the
overrides. Each Table 2 method expands into the Stage I runs its encoders need, one Stage II run
(if it is aligned) and one Stage III run that sweeps fractions and seeds; the figure and table
notebooks depend on the Stage III runs they read. A run's parameters are plain YAML values, so
they hash, go to papermill unchanged, and land in the provenance record.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent
PROFILES_DIR = PACKAGE_DIR / "profiles"
EXPERIMENTS_FILE = PACKAGE_DIR / "experiments.yaml"
# Sections of the training configuration (ctrip.stages.config); `--set stage3.lr_head=...` reaches
# them without the `config.` prefix.
CONFIG_SECTIONS = ("models", "stage1", "stage2", "stage3", "augment", "trainer")


@dataclass
class Run:
    """One unit of cached work: a notebook executed with parameters (or the cohort synthesis).

    `parameters` are hashed; `inputs` name other runs (nested dict/list of run names) and reach
    the notebook as the folders of those runs; `needs` are every run this one depends on.
    """

    name: str
    notebook: str | None  # file name in notebooks/, None for the cohort synthesis
    parameters: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)
    needs: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)  # files copied to the results folder


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of `base` with `override` merged in, recursing into dicts."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def parse_override(text: str) -> tuple[list[str], Any]:
    """`"stage2.temperature_le=0.07"` -> (["stage2", "temperature_le"], 0.07); values are YAML."""
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected key=value, e.g. sweep.seeds=[0,1]")
    key, value = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ValueError(f"--set {text!r}: empty key")
    return path, yaml.safe_load(value)


def apply_override(settings: dict, path: list[str], value: Any) -> None:
    """Set `settings[path...] = value`; the top-level section must exist (catches typos)."""
    if path[0] not in settings:
        raise ValueError(
            f"--set {'.'.join(path)}: unknown section {path[0]!r}; sections: {sorted(settings)}"
        )
    node = settings
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"--set {'.'.join(path)}: {'.'.join(path[: i + 1])} is not a section")
        node = child
    node[path[-1]] = value


def load_settings(profile: str | Path, overrides: list[str] | None = None) -> dict:
    """The settings tree of a profile (a name in profiles/ or a YAML path) with overrides."""
    path = Path(profile)
    if not path.suffix:
        path = PROFILES_DIR / f"{profile}.yaml"
    if not path.exists():
        raise FileNotFoundError(
            f"profile {profile!r} not found ({path}); known: {available_profiles()}"
        )
    settings = deep_merge(
        yaml.safe_load(EXPERIMENTS_FILE.read_text()), yaml.safe_load(path.read_text())
    )
    settings.setdefault("profile", path.stem)
    settings.setdefault("config", {})
    for text in overrides or []:
        key, value = parse_override(text)
        if key[0] in CONFIG_SECTIONS:  # `--set stage2.lr=1e-4` means the training config
            key = ["config", *key]
        apply_override(settings, key, value)
    return settings


def slug(name: str) -> str:
    """A file-name-safe run suffix for a method name: "L+E+Tp" -> "L_E_Tp"."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")


def _stage1_name(modality: str, tabular_variant: str) -> str:
    return f"stage1_tabular_{tabular_variant}" if modality == "tabular" else f"stage1_{modality}"


def build_plan(settings: dict) -> list[Run]:
    """Expand the settings into runs, in an order where every run follows what it needs."""
    from ctrip.stages.config import make_config

    nb = settings["notebooks"]
    seed = int(settings.get("seed", 0))
    try:
        config = make_config(
            settings.get("config_profile", "default"), settings.get("config") or {}
        )
    except KeyError as err:
        raise ValueError(f"training config: {err.args[0]}") from None

    def stage_config(stage: str, modalities: list[str]) -> dict:
        """The config sections a run reads, so an unrelated change does not invalidate it."""
        models = {m: config["models"][m] for m in modalities if m in config["models"]}
        return {
            "models": models,
            stage: config[stage],
            "augment": config["augment"],
            "trainer": config["trainer"],
        }

    runs: dict[str, Run] = {}

    def add(run: Run) -> Run:
        run.needs = ["cohort", *_run_names(run.inputs)] if run.name != "cohort" else []
        runs[run.name] = run
        return run

    add(Run("cohort", None, {"cohort": settings["cohort"]}))
    add(Run("data_card", nb["data_card"], {}, publish=["figures"]))

    methods: dict[str, dict] = {}
    for name, spec in settings["methods"].items():
        spec = deep_merge(settings.get("method_defaults", {}), spec or {})
        if spec["encoder"] not in ("scratch", "stage1", "stage2"):
            raise ValueError(
                f"methods.{name}.encoder: {spec['encoder']!r} is not scratch, stage1 or stage2"
            )
        if spec["encoder"] == "stage2" and not spec.get("pairs"):
            raise ValueError(f"methods.{name}: an aligned (stage2) method needs pairs")
        methods[name] = spec

    def stage1(modality: str, variant: str) -> str:
        name = _stage1_name(modality, variant)
        if name not in runs:
            params = {"modality": modality, "tabular_variant": variant, "seed": seed}
            params["config"] = stage_config("stage1", [modality])
            add(Run(name, nb["stage1"], params, publish=["figures"]))
        return name

    stage3_runs: dict[str, str] = {}
    for name, spec in methods.items():
        variant = spec.get("tabular_variant", "T")
        init: str | None = None
        if spec["encoder"] == "stage1":
            init = stage1(spec["modality"], variant)
        elif spec["encoder"] == "stage2":
            pairs = [list(p) for p in spec["pairs"]]
            encoders = {m: stage1(m, variant) for pair in pairs for m in pair}
            params = {"pairs": pairs, "tabular_variant": variant, "seed": seed}
            params["config"] = stage_config("stage2", sorted(encoders))
            init = f"stage2_{slug(name)}"
            add(Run(init, nb["stage2"], params, inputs={"encoders": encoders}))
        sweep = settings["sweep"]
        params = {
            "method": name,
            "modality": spec["modality"],
            "encoder": spec["encoder"],
            "tabular_variant": variant,
            "frozen": bool(spec.get("frozen", False)),
            "fractions": [float(f) for f in sweep["fractions"]],
            "seeds": [int(s) for s in sweep["seeds"]],
            "config": stage_config("stage3", [spec["modality"]]),
        }
        stage3_runs[name] = f"stage3_{slug(name)}"
        add(Run(stage3_runs[name], nb["stage3"], params, inputs={"init": init}))

    figures = settings["figures"]
    labels = {name: spec.get("label", name) for name, spec in methods.items()}
    inputs = {"stage3": stage3_runs}
    modalities = {name: spec["modality"] for name, spec in methods.items()}
    table = {"methods": labels, "modalities": modalities, **settings["table2"]}
    add(
        Run(
            "table2",
            nb["table2"],
            table,
            inputs=inputs,
            publish=["table2.csv", "table2_cp18.csv", "oracle.csv", "table2_seeds.csv"],
        )
    )
    add(
        Run(
            "fraction_curves",
            nb["fraction_curves"],
            {"methods": labels, **figures["fraction_curves"]},
            inputs=inputs,
            publish=["pearson_vs_fraction.csv", "figures"],
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
            umap,
            inputs={"before": before, "after": f"stage2_{slug(umap['method'])}"},
            publish=["figures"],
        )
    )
    return _ordered(runs)


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

    stage = {"cohort": 0, "data_card": 1, "stage1": 2, "stage2": 3, "stage3": 4}
    for name in sorted(
        runs, key=lambda n: stage.get(n.split("_")[0] if n.startswith("stage") else n, 5)
    ):
        visit(name, ())
    return [runs[name] for name in done]


def dependents(plan: list[Run], name: str) -> set[str]:
    """Every run that (transitively) needs `name`."""
    out: set[str] = set()
    for run in plan:  # plan is topologically ordered
        if name in run.needs or out.intersection(run.needs):
            out.add(run.name)
    return out
