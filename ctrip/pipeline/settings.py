"""The settings tree of a pipeline: `experiments.yaml`, a profile, `--cohort` and `--set`.

`load_settings` merges `ctrip/pipeline/experiments.yaml` with the profile
(`ctrip/profiles/<name>.yaml`, the one registry of profiles) using the one merge function
(`ctrip.stages.config.merge_config`), applies every `--set key=value` with the one dotted setter
(`set_key`), fills in the training configuration the plan uses (`settings["config"]`, complete),
and checks the type and range of every value, naming the key, before any work starts.
"""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path
from typing import Any

import yaml

from ctrip.data.schema import CP_NAMES
from ctrip.stages.config import DEFAULT_CONFIG, load_profile, merge_config, profile_file, set_key

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

_POSITIVE = (0.0, math.inf, False)  # (low, high, low included)
# Ranges by dotted key pattern (fnmatch); types come from the defaults.
RANGES: dict[str, tuple[float, float, bool]] = {
    "config.models.*.dim": _POSITIVE, "config.models.*.depth": _POSITIVE,
    "config.models.*.heads": _POSITIVE, "config.models.*.decoder_*": _POSITIVE,
    "config.models.*.mlp_ratio": _POSITIVE, "config.models.*.patch_size": _POSITIVE,
    "config.models.*.mask_ratio": (0.0, 1.0, False), "config.models.ecg.rate_hz": _POSITIVE,
    "config.models.ecg.patch_seconds": _POSITIVE, "config.models.ecg.highpass_hz": _POSITIVE,
    "config.stage?.max_epochs": _POSITIVE, "config.stage?.batch_size": _POSITIVE,
    "config.stage?.lr*": _POSITIVE, "config.stage?.weight_decay": (0.0, math.inf, True),
    "config.stage?.warmup_epochs": (0.0, math.inf, True),
    "config.stage?.min_lr_ratio": (0.0, 1.0, True), "config.stage?.patience": _POSITIVE,
    "config.stage2.projection_*": _POSITIVE, "config.stage2.temperatures.*": _POSITIVE,
    "config.stage2.temperature_bounds.*": _POSITIVE, "config.stage3.hidden.*": _POSITIVE,
    "config.stage3.dropout": (0.0, 1.0, True), "config.augment.crop_scale.*": (0.0, 1.0, False),
    "config.augment.crop_ratio.*": _POSITIVE, "config.augment.rotation_deg": (0.0, 180.0, True),
    "config.augment.scale.*": _POSITIVE, "config.rigid.rotation_deg": (0.0, 180.0, True),
    "config.rigid.translate": (0.0, 0.5, True), "config.trainer.devices": _POSITIVE,
    "config.trainer.num_nodes": _POSITIVE, "config.trainer.num_workers": (0.0, math.inf, True),
    "config.trainer.log_every_n_steps": _POSITIVE, "config.trainer.threads": _POSITIVE,
    "cohort.n_subjects": (10.0, math.inf, True), "cohort.workers": _POSITIVE,
    "cohort.sizes.*": _POSITIVE, "jobs": _POSITIVE, "sweep.fractions.*": (0.0, 1.0, False),
    "sweep.seeds.*": (0.0, math.inf, True), "seed": (0.0, math.inf, True),
    "table2.fraction": (0.0, 1.0, False), "table2.n_bootstrap": (0.0, math.inf, True),
    "figures.attention.n_subjects": _POSITIVE, "figures.attention.ig_steps": _POSITIVE,
    "figures.attention.n_measure": _POSITIVE, "figures.attention.n_bootstrap": _POSITIVE,
    "figures.umap.n_neighbors": (2.0, math.inf, True), "figures.umap.min_dist": (0.0, 1.0, True),
}  # fmt: skip
# Leaves whose default is null or that hold either type.
TYPES: dict[str, tuple[type, ...]] = {
    "config.models.ecg.rate_hz": (int, float, type(None)),
    "config.models.*.highpass_hz": (int, float, type(None)),
    "config.stage2.projection_hidden": (int, type(None)),
    "config.trainer.devices": (int, str, list),
    "cohort.path": (str,),
}
CHOICES: dict[str, tuple[Any, ...]] = {
    "config.models.*.pool": ("cls", "mean"),
    "methods.*.encoder": ("scratch", "stage1", "stage2"),
    "methods.*.modality": ("localizer", "cmr", "ecg", "tabular"),
    "methods.*.tabular_variant": ("T", "Tp"),
}


def _match(table: dict[str, Any], key: str) -> Any:
    return next((v for pattern, v in table.items() if fnmatch.fnmatchcase(key, pattern)), None)


def _kind(value: Any) -> str:
    return "a number" if isinstance(value, float) else f"a {type(value).__name__}"


def _check_leaf(key: str, value: Any, default: Any) -> None:
    allowed = _match(TYPES, key)
    if allowed is None and default is not None:
        allowed = (int, float) if isinstance(default, float) else (type(default),)
    if allowed is not None:
        is_bool = isinstance(value, bool)
        ok = isinstance(value, allowed) and (not is_bool or bool in allowed)
        if not ok:
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise SettingsError(f"{key}: {value!r} is {_kind(value)}, expected {names}")
    choices = _match(CHOICES, key)
    if choices is not None and value not in choices:
        raise SettingsError(f"{key}: {value!r} is not one of {list(choices)}")
    bounds = _match(RANGES, key)
    if bounds is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high, low_in = bounds
        if not (math.isfinite(value) or high == math.inf and value == math.inf) or not (
            (value >= low if low_in else value > low) and value <= high
        ):
            side = "[" if low_in else "("
            raise SettingsError(f"{key}: {value!r} is outside {side}{low:g}, {high:g}]")


def _walk(key: str, value: Any, default: Any) -> None:
    if isinstance(default, dict) and not isinstance(value, dict):
        raise SettingsError(f"{key}: {value!r} is {_kind(value)}, expected a section")
    if isinstance(value, dict):
        for k, v in value.items():
            sub = default.get(k) if isinstance(default, dict) else None
            _walk(f"{key}.{k}", v, sub)
    elif isinstance(value, list):
        if default is not None and not isinstance(default, list) and _match(TYPES, key) is None:
            raise SettingsError(f"{key}: {value!r} is a list, expected {type(default).__name__}")
        item = default[0] if isinstance(default, list) and default else None
        for i, v in enumerate(value):
            _walk(f"{key}.{i}", v, item)
    else:
        _check_leaf(key, value, default)


def check_settings(settings: dict[str, Any]) -> None:
    """Type and range of every value (types from the defaults), and the cross-field rules."""
    experiments = yaml.safe_load(EXPERIMENTS_FILE.read_text())
    defaults = {**experiments, "config": DEFAULT_CONFIG}
    defaults["methods"] = {m: experiments["method_defaults"] for m in settings["methods"]}
    defaults["cohort"] = {"n_subjects": 1, "seed": 0, "workers": 1, "path": None,
                          "sizes": {"image_size": 1, "cmr_size": 1,
                                    "ecg_sampling_rate_hz": 1.0, "ecg_seconds": 1.0}}  # fmt: skip
    defaults.update(seed=0, jobs=1, sweep={"fractions": [1.0], "seeds": [0]})
    for section, value in settings.items():
        if section in defaults:
            _walk(section, value, defaults[section])
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
    for key, cps in (("table2.cps", table2["cps"]),
                     ("table2.yardstick_cps", table2["yardstick_cps"]),
                     ("table2.loa_cps", table2["loa_cps"]),
                     ("figures.fraction_curves.cps", settings["figures"]["fraction_curves"]["cps"]),
                     ("figures.attention.target_cp", [settings["figures"]["attention"]["target_cp"]])):  # fmt: skip
        unknown = [cp for cp in cps if cp not in CP_NAMES]
        if unknown:
            raise SettingsError(f"{key}: {unknown} are not CP names ({', '.join(CP_NAMES)})")
    low, high = settings["config"]["stage2"]["temperature_bounds"]
    if low >= high:
        raise SettingsError(f"config.stage2.temperature_bounds: {low} is not below {high}")
