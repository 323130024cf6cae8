"""The settings tree of a pipeline: `experiments.yaml`, a profile, `--cohort` and `--set`.

`load_settings` merges `ctrip/pipeline/experiments.yaml` with the profile
(`ctrip/profiles/<name>.yaml`, the one registry of profiles) using the one merge function
(`ctrip.stages.config.merge_config`), applies every `--set key=value` with the one dotted setter
(`set_key`), fills in the training configuration the plan uses (`settings["config"]`, complete),
and checks every value before any work starts, naming the key: its type (from `typed_defaults`),
range (`RANGES`) or choices (`CHOICES`, `NAMES`); an unknown key names the closest known one.
`check_parameters` checks a notebook's papermill parameters the same way (`NOTEBOOK_PARAMETERS`
maps each to the settings key it comes from), in the cell right after its parameters.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ctrip.data.schema import CP_NAMES, MODALITIES, SPLITS
from ctrip.stages.config import (
    DEFAULT_CONFIG,
    load_profile,
    make_config,
    merge_config,
    profile_file,
    run_config,
    set_key,
)

EXPERIMENTS_FILE = Path(__file__).resolve().parent / "experiments.yaml"
# Sections of the training configuration; `--set stage3.lr_head=...` reaches them without the
# `config.` prefix.
CONFIG_SECTIONS = tuple(DEFAULT_CONFIG)


class SettingsError(ValueError):
    """A setting has the wrong type or is out of range; the message names the key."""


def parse_override(text: str) -> tuple[str, Any]:
    """`"stage2.lr=0.07"` -> ("config.stage2.lr", 0.07); values are YAML."""
    if "=" not in text:
        raise SettingsError(f"--set {text!r}: expected key=value, e.g. sweep.seeds=[0,1]")
    key, value = text.split("=", 1)
    parts = [part for part in key.strip().split(".") if part]
    if not parts:
        raise SettingsError(f"--set {text!r}: empty key")
    if parts[0] in CONFIG_SECTIONS:  # `--set stage2.lr=1e-4` means the training config
        parts = ["config", *parts]
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise SettingsError(f"--set {key}: {value!r} is not a YAML value ({err})") from None
    return ".".join(parts), parsed


def load_settings(
    profile: str | Path, overrides: list[str] | None = None, cohort: str | Path | None = None
) -> dict[str, Any]:
    """The checked settings tree of a profile (a name or a YAML path), with `--cohort PATH`
    (an existing cohort instead of the simulated one) and `--set` overrides."""
    path = profile_file(profile)
    settings = merge_config(yaml.safe_load(EXPERIMENTS_FILE.read_text()), load_profile(path),
                            strict=False)  # fmt: skip
    settings["profile"] = path.stem
    settings["config"] = merge_config(DEFAULT_CONFIG, settings.get("config") or {}, strict=False)
    try:  # the profile file alone first, so that its own mistakes name it
        check_settings(settings)
    except SettingsError as err:
        raise SettingsError(f"{path}: {err}") from None
    if cohort is not None:
        settings["cohort"]["path"] = str(Path(cohort).resolve())
    for text in overrides or []:
        key, value = parse_override(text)
        try:
            settings = set_key(settings, key, value, what="--set")
        except KeyError as err:
            message = err.args[0]
            raise SettingsError(
                message if message.startswith("--set") else f"--set {key}: {message}"
            ) from None
    check_settings(settings)
    return settings


# ---------------------------------------------------------------------------- checks

# (low, high, low included, high included); types come from `typed_defaults`.
_POSITIVE = (0.0, math.inf, False, True)
_NONNEGATIVE = (0.0, math.inf, True, True)
_SHARE = (0.0, 1.0, False, True)  # a fraction of something: above 0, up to all of it
# Ranges by dotted key pattern (fnmatch): every number of the settings has one (a test checks).
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "config.models.*.dim": _POSITIVE, "config.models.*.depth": _POSITIVE,
    "config.models.*.heads": _POSITIVE, "config.models.*.decoder_*": _POSITIVE,
    "config.models.*.mlp_ratio": _POSITIVE, "config.models.*.patch_size": _POSITIVE,
    "config.models.*.mask_ratio": (0.0, 1.0, False, False), "config.models.ecg.rate_hz": _POSITIVE,
    "config.models.ecg.patch_seconds": _POSITIVE, "config.models.ecg.highpass_hz": _POSITIVE,
    "config.models.*.stage1.max_epochs": _POSITIVE, "config.models.*.stage1.lr": _POSITIVE,
    "config.stage?.max_epochs": _POSITIVE, "config.stage?.batch_size": _POSITIVE,
    "config.stage?.lr*": _POSITIVE, "config.stage?.weight_decay": _NONNEGATIVE,
    "config.stage?.warmup_epochs": _NONNEGATIVE,
    "config.stage?.min_lr_ratio": (0.0, 1.0, True, True), "config.stage?.patience": _POSITIVE,
    "config.stage2.projection_*": _POSITIVE, "config.stage2.temperatures.*": _POSITIVE,
    "config.stage2.temperature_bounds.*": _POSITIVE, "config.stage3.hidden.*": _POSITIVE,
    "config.stage3.dropout": (0.0, 1.0, True, False), "config.augment.crop_scale.*": _SHARE,
    "config.augment.crop_ratio.*": _POSITIVE, "config.augment.rotation_deg": (0.0, 180.0, True, True),
    "config.augment.scale.*": _POSITIVE, "config.rigid.rotation_deg": (0.0, 180.0, True, True),
    "config.rigid.translate": (0.0, 0.5, True, True), "config.trainer.devices": _POSITIVE,
    "config.trainer.num_nodes": _POSITIVE, "config.trainer.num_workers": _NONNEGATIVE,
    "config.trainer.log_every_n_steps": _POSITIVE, "config.trainer.threads": _POSITIVE,
    "cohort.n_subjects": (10.0, math.inf, True, True), "cohort.seed": _NONNEGATIVE,
    "cohort.workers": _POSITIVE, "cohort.sizes.*": _POSITIVE, "jobs": _POSITIVE,
    "sweep.fractions.*": _SHARE, "sweep.seeds.*": _NONNEGATIVE, "seed": _NONNEGATIVE,
    "reference_baselines.epochs": _POSITIVE, "reference_baselines.batch_size": _POSITIVE,
    "reference_baselines.lr": _POSITIVE,
    "screening.level": (0.0, 1.0, False, False), "screening.n_bootstrap": _POSITIVE,
    "screening.bootstrap_seed": _NONNEGATIVE,
    "table2.fraction": _SHARE, "table2.n_bootstrap": _NONNEGATIVE,
    "table2.bootstrap_seed": _NONNEGATIVE,
    "figures.attention.n_subjects": _POSITIVE, "figures.attention.ig_steps": _POSITIVE,
    "figures.attention.n_measure": _POSITIVE, "figures.attention.n_bootstrap": _POSITIVE,
    "figures.attention.seed": _NONNEGATIVE, "figures.umap.seed": _NONNEGATIVE,
    "figures.umap.n_neighbors": (2.0, math.inf, True, True),
    "figures.umap.min_dist": (0.0, 1.0, True, True),
    "run.n_bootstrap": _NONNEGATIVE, "run.ceiling_reference_subjects": _POSITIVE,
    "resources.*.gpus": _NONNEGATIVE, "resources.*.cpus": _POSITIVE,
    "resources.*.mem_gb": _POSITIVE, "resources.*.time_min": _POSITIVE,
}  # fmt: skip
# Leaves whose default is null or that hold either type.
TYPES: dict[str, tuple[type, ...]] = {
    "config.models.ecg.rate_hz": (int, float, type(None)),
    "config.models.*.highpass_hz": (int, float, type(None)),
    "config.models.*.stage1.max_epochs": (int, type(None)),
    "config.models.*.stage1.lr": (int, float, type(None)),
    "config.stage2.lr_encoder": (int, float, type(None)),
    "config.stage2.projection_hidden": (int, type(None)),
    "config.trainer.devices": (int, str, list),
    "cohort.path": (str,),
    "cohort.sizes.localizer_fov_mm": (int, float, type(None)),
    "run.init": (str, type(None)),
    "run.ceiling_reference_subjects": (int, type(None)),
    "run.ceiling_neural": (bool, type(None)),
}
# Lightning's precisions (`Trainer(precision=...)`) that need no further package.
_PRECISIONS = ("16-true", "16-mixed", "bf16-true", "bf16-mixed", "32-true", "64-true")
# UMAP's metrics for real-valued features that need no further arguments.
UMAP_METRICS = ("euclidean", "manhattan", "chebyshev", "cosine", "correlation", "canberra",
                "braycurtis")  # fmt: skip


def _screening_flags() -> list[str]:
    # Imported by name: a notebook's code key (ctrip.pipeline.cache) follows import statements,
    # and only the screening notebook, which imports the module itself, has flags.
    screening = importlib.import_module("ctrip.analysis.screening")
    return [flag.name for flag in screening.SCREENING_FLAGS]


# Lists (or one value) that name known things: an error lists every unknown name.
NAMES: dict[str, tuple[Callable[[], Sequence[str]], str]] = {
    "*cps": (lambda: CP_NAMES, "CP names"), "*target_cp": (lambda: CP_NAMES, "CP names"),
    "*flags": (_screening_flags, "screening flags"),
}  # fmt: skip
CHOICES: dict[str, tuple[Any, ...]] = {
    "config.models.*.pool": ("cls", "mean"),
    "config.models.*.stem": ("linear", "hmlp"),
    "config.trainer.accelerator": ("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
    "config.trainer.precision": _PRECISIONS,
    "cohort.sizes.localizer_field": ("heart", "thorax"),
    "method*.encoder": ("scratch", "stage1", "stage2"),
    "method*.modality": MODALITIES,
    "method*.pairs.*.*": MODALITIES,
    "method*.tabular_variant": ("T", "Tp"),
    "figures.umap.metric": UMAP_METRICS,
    "figures.umap.split": SPLITS,
    "run.*modalities.*": MODALITIES,
}


# What the plan makes for a notebook rather than takes from the settings (run folders, method
# lists), as typed examples: the `run.*` keys of the notebooks' parameters.
RUN_DEFAULTS: dict[str, Any] = {
    "cohort_path": "", "out_dir": "", "profile": "smoke", "folder": "", "folders": {"*": ""},
    "init": None, "method": "", "names": [""], "labels": {"*": ""}, "modalities": ["localizer"],
    "inference_modalities": {"*": "localizer"}, "simulated": True, "n_bootstrap": 0,
    "ceiling_reference_subjects": None, "ceiling_neural": None,
}  # fmt: skip


def typed_defaults() -> dict[str, Any]:
    """The typed example every key of the settings is checked against: experiments.yaml, the
    training defaults and the profile-only sections. A mapping {"*": x} takes any key, with
    values like x (method names, Stage II temperature pairs)."""
    experiments = yaml.safe_load(EXPERIMENTS_FILE.read_text())
    method = {**experiments["method_defaults"], "pairs": [["localizer", "ecg"]]}
    config = copy.deepcopy(DEFAULT_CONFIG)
    config["stage2"]["temperatures"] = {"*": 0.1}
    cohort = {"n_subjects": 1, "seed": 0, "workers": 1, "path": None,
              "sizes": {"image_size": 1, "cmr_size": 1, "ecg_sampling_rate_hz": 1.0,
                        "ecg_seconds": 1.0, "localizer_field": "heart",
                        "localizer_fov_mm": 1.0}}  # fmt: skip
    return {**experiments, "profile": "", "method_defaults": method,
            "methods": {"*": {"label": "", "modality": "localizer", **method}}, "config": config,
            "cohort": cohort, "seed": 0, "jobs": 1, "sweep": {"fractions": [1.0], "seeds": [0]}}  # fmt: skip


def _at(tree: dict[str, Any], key: str) -> Any:
    """The value at a dotted key (under {"*": x}, x)."""
    for part in key.split("."):
        tree = tree["*"] if "*" in tree else tree[part]
    return tree


def _match(table: dict[str, Any], key: str) -> Any:
    return next((v for pattern, v in table.items() if fnmatch.fnmatchcase(key, pattern)), None)


def _kind(value: Any) -> str:
    return "a number" if isinstance(value, float) else f"a {type(value).__name__}"


def _check_leaf(key: str, value: Any, default: Any, shown: str) -> Any:
    """One value checked by its type, choices and range (looked up by `key`; errors name
    `shown`); an int where a float is expected comes back a float."""
    allowed = _match(TYPES, key)
    if allowed is None and default is not None:
        allowed = (int, float) if isinstance(default, float) else (type(default),)
    if allowed is not None:
        is_bool = isinstance(value, bool)
        if not isinstance(value, allowed) or (is_bool and bool not in allowed):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            # a string is refused, not parsed: "False" is truthy, and "no" or "0" would be guesses
            hint = (
                " (strings are not read as bools: give true or false unquoted)"
                if bool in allowed
                else ""
            )
            raise SettingsError(f"{shown}: {value!r} is {_kind(value)}, expected {names}{hint}")
    choices = _match(CHOICES, key)
    if choices is not None and value not in choices:
        raise SettingsError(f"{shown}: {value!r} is not one of {list(choices)}")
    bounds = _match(RANGES, key)
    if bounds is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high, low_in, high_in = bounds
        inside = (value >= low if low_in else value > low) and (
            value <= high if high_in else value < high
        )
        if not (math.isfinite(value) or high == math.inf and value == math.inf) or not inside:
            interval = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
            raise SettingsError(f"{shown}: {value!r} is outside {interval}")
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _dotted(parent: str, key: Any) -> str:
    return f"{parent}.{key}" if parent else str(key)


def _walk(key: str, value: Any, default: Any, shown: str | None = None) -> Any:
    """`value` checked against its typed example `default`, key by key (an unknown key is an
    error that names the closest known one); returns it with ints made floats where floats
    are expected."""
    shown = key if shown is None else shown
    names = _match(NAMES, key)
    if names is not None and isinstance(value, (list, str)):
        known, what = names[0](), names[1]
        unknown = [
            name for name in (value if isinstance(value, list) else [value]) if name not in known
        ]
        if unknown:
            raise SettingsError(f"{shown}: {unknown} are not {what} ({', '.join(known)})")
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise SettingsError(f"{shown}: {value!r} is {_kind(value)}, expected a section")
        out = {}
        for k, v in value.items():
            if "*" not in default and k not in default:
                close = difflib.get_close_matches(str(k), [str(name) for name in default], n=1)
                hint = f"did you mean {_dotted(shown, close[0])}?" if close else \
                    f"known: {', '.join(map(str, default))}"  # fmt: skip
                raise SettingsError(f"{_dotted(shown, k)}: unknown key; {hint}")
            sub = default.get("*", default.get(k))
            out[k] = _walk(_dotted(key, k), v, sub, _dotted(shown, k))
        return out
    if isinstance(value, list) and isinstance(default, list):
        item = default[0] if default else None
        return [_walk(f"{key}.{i}", v, item, f"{shown}.{i}") for i, v in enumerate(value)]
    return _check_leaf(key, value, default, shown)


def check_settings(settings: dict[str, Any]) -> None:
    """Type and range of every value (types from the defaults), and the cross-field rules."""
    _walk("", settings, typed_defaults())
    for name, spec in settings["methods"].items():
        if "modality" not in (spec or {}):
            raise SettingsError(f"methods.{name}.modality: missing (the input at inference)")
    sweep, table2 = settings["sweep"], settings["table2"]
    control = table2.get("control") or ""
    if control and control not in settings["methods"]:
        raise SettingsError(
            f"table2.control: {control!r} is not one of the methods ({', '.join(settings['methods'])}); "
            '"" for none'
        )
    for key in ("fractions", "seeds"):
        if not sweep[key]:
            raise SettingsError(f"sweep.{key}: empty")
    if not any(math.isclose(table2["fraction"], f) for f in sweep["fractions"]):
        raise SettingsError(
            f"table2.fraction: {table2['fraction']} is not one of sweep.fractions {sweep['fractions']}"
        )
    for key in ("screening.coverage_methods", "figures.attention.baseline",
                "figures.attention.method", "figures.umap.method"):  # fmt: skip
        value = _at(settings, key)
        unknown = [
            m
            for m in (value if isinstance(value, list) else [value])
            if m not in settings["methods"]
        ]
        if unknown:
            raise SettingsError(
                f"{key}: {unknown} are not methods ({', '.join(settings['methods'])})"
            )
    low, high = settings["config"]["stage2"]["temperature_bounds"]
    if low >= high:
        raise SettingsError(f"config.stage2.temperature_bounds: {low} is not below {high}")


# ---------------------------------------------------------------------------- notebooks

_COMMON = {"cohort_path": "run.cohort_path", "out_dir": "run.out_dir"}
_TRAINING = {"tabular_variant": "methods.*.tabular_variant", "config": "config",
             "profile": "run.profile"}  # fmt: skip
# Each notebook's parameters -> the key whose type, range and choices they have: the settings
# key the plan fills them from (checked as `ctrip run --set` checks it), or a `run.*` key.
NOTEBOOK_PARAMETERS: dict[str, dict[str, str]] = {
    "data_card": {**_COMMON, "ceiling_reference_subjects": "run.ceiling_reference_subjects",
                  "ceiling_neural": "run.ceiling_neural", "simulated": "run.simulated"},
    "stage1_pretrain": {**_COMMON, "modality": "methods.*.modality", "seed": "seed", **_TRAINING},
    "stage2_align": {**_COMMON, "pairs": "methods.*.pairs", "seed": "seed", **_TRAINING,
                     "encoders": "run.folders"},
    "stage3_finetune": {**_COMMON, "method": "run.method", "modality": "methods.*.modality",
                        "encoder": "methods.*.encoder", "init": "run.init",
                        "frozen": "methods.*.frozen", "fractions": "sweep.fractions",
                        "seeds": "sweep.seeds", **_TRAINING},
    "table2": {**_COMMON, "methods": "run.labels", "controls": "run.names", "aligned": "run.names",
               "control": "table2.control", "modalities": "run.inference_modalities",
               "stage3": "run.folders", "references": "run.folder", "data_card": "run.folder",
               **{k: f"table2.{k}" for k in ("cps", "yardstick_cps", "loa_cps", "fraction",
                                             "n_bootstrap", "bootstrap_seed")},
               "compare_with": "run.method", "simulated": "run.simulated"},
    "fraction_curves": {**_COMMON, "methods": "run.labels", "stage3": "run.folders",
                        "references": "run.folder", "cps": "figures.fraction_curves.cps",
                        "n_bootstrap": "run.n_bootstrap"},
    "reference_baselines": {**_COMMON, "modalities": "run.modalities",
                            "fractions": "sweep.fractions", "seeds": "sweep.seeds",
                            **{k: f"reference_baselines.{k}" for k in ("epochs", "batch_size", "lr")}},
    "screening": {**_COMMON, "methods": "run.labels", "stage3": "run.folders",
                  **{k: f"screening.{k}" for k in ("level", "flags", "coverage_methods",
                                                   "n_bootstrap", "bootstrap_seed")}},
    "attention_maps": {**_COMMON, "labels": "run.labels", "stage3": "run.folders",
                       **{k: f"figures.attention.{k}" for k in ("baseline", "method", "n_subjects",
                          "n_measure", "target_cp", "ig_steps", "n_bootstrap", "seed")}},
    "umaps": {**_COMMON, "before": "run.folders", "after": "run.folder", "pairs": "methods.*.pairs",
              "simulated": "run.simulated",
              **{k: f"figures.umap.{k}" for k in ("method", "n_neighbors", "min_dist", "metric",
                                                  "split", "seed")}},
}  # fmt: skip
# The training notebooks: their stage, whose run configuration `config=None` stands for.
_STAGES = {"stage1_pretrain": "stage1", "stage2_align": "stage2", "stage3_finetune": "stage3"}


def check_parameters(notebook: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The papermill parameters of `notebook` (its file or stem) checked as `ctrip run --set`
    checks the settings they come from (type, range, choices), before the notebook does any
    work; `parameters` may hold other names too (a kernel's `globals()`). Returns them with
    ints made floats where floats are expected and, in a training notebook, `config=None`
    replaced by `profile`'s run configuration. Raises SettingsError naming the parameter."""
    name = Path(notebook).stem
    if name not in NOTEBOOK_PARAMETERS:
        raise SettingsError(
            f"{notebook}: not a pipeline notebook ({', '.join(NOTEBOOK_PARAMETERS)})"
        )
    where = f"notebooks/{name}.ipynb: parameter"
    defaults = {**typed_defaults(), "run": RUN_DEFAULTS}
    checked: dict[str, Any] = {}
    for param, key in NOTEBOOK_PARAMETERS[name].items():
        if param not in parameters:
            raise SettingsError(f"{where} {param}: missing")
        value = parameters[param]
        if param == "config" and value is None:
            checked[param] = None  # resolved below, from the checked profile
            continue
        try:
            checked[param] = _walk(key, value, _at(defaults, key), param)
        except SettingsError as err:
            raise SettingsError(f"{where} {err}") from None
    if name in _STAGES:
        try:
            profile_file(checked["profile"])
        except FileNotFoundError as err:
            raise SettingsError(f"{where} profile: {err}") from None
    if name in _STAGES and checked["config"] is None:
        stage = _STAGES[name]
        modalities = ["localizer"] if stage == "stage2" else [checked["modality"]]
        try:
            checked["config"] = run_config(make_config(checked["profile"]), stage, modalities,
                                           checked.get("pairs"))  # fmt: skip
        except ValueError as err:  # Stage II pairs that are not localizer-anchored
            raise SettingsError(f"{where} pairs: {err}") from None
    return checked
