"""The one configuration module: the training defaults, the profiles, the experiments file,
`--cohort` and `--set` are loaded, merged, checked and documented here.

Two trees come out of it. The *training configuration* (`DEFAULT_CONFIG`, below, with every key
documented; `make_config`, `run_config`) is what a model, a loss and a trainer read: plain
values that the stages pass on as arguments. The *settings* of a pipeline (`load_settings`) are
the experiments file (`ctrip/pipeline/experiments.yaml`: the methods, the figures, the sweep)
with a profile over it (`ctrip/profiles/<name>.yaml`, the one registry of profiles: cohort sizes,
training overrides under `config:`, sweeps, resources, and `why:` each departure from the paper
is made), then `--cohort` and every `--set`; the complete training configuration sits under
`settings["config"]`. Every value is checked before any work starts, naming its key.

Training configuration
----------------------
Training configuration: one plain nested dict (JSON/YAML-serializable), so that profiles,
`--set key=value` and papermill parameters can fill it.

`DEFAULT_CONFIG` is sized for the `default` profile (the synthetic cohort on a 2-core laptop
CPU: small ViTs on 64x64 localizers with 8x8 patches, ECG at a reduced rate in all-lead
patches); the `paper` profile restores the sizes of the paper and its public code.
`make_config(profile, overrides)` merges them; unknown keys are errors, so a typo in
`--set` cannot be silently ignored.

Keys (every one is used by `ctrip.stages.train`):

models.<modality>            one section per modality: localizer, cmr, ecg, tabular
    dim, depth, heads        encoder width, number of blocks, attention heads
    mlp_ratio                hidden width of the block MLP / dim
    decoder_dim, decoder_depth, decoder_heads    the light MAE decoder (Stage I only)
    mask_ratio               fraction of tokens masked in Stage I (0.75)
    pool                     the feature Stage II/III use: "cls" (CLS token) or "mean" (token
                             average); weight-free, so it may differ between stages
    patch_size               (localizer, cmr) square patch side in pixels; the image size is
                             read from the cohort and must be divisible by it
    stem                     (localizer, cmr) patch embedding: "linear" (ViT) or "hmlp" (the
                             patch-local hierarchical MLP stem of Touvron et al. 2022)
    rate_hz                  (ecg) sampling rate the model sees; the ECG is averaged down to it
                             (null or >= the cohort's rate: the cohort's own rate)
    patch_seconds            (ecg) patch length in seconds (0.2 s = 100 samples at 500 Hz)
    per_lead                 (ecg) true: one token per lead x patch with (lead, time) position
                             (the paper); false: one token holds all 12 leads (cheaper)
    highpass_hz              (ecg) baseline-drift removal inside the model (zero-phase
                             Butterworth high-pass, 0.67 Hz as ctrip.data.ecg); null: off
    decoder_alibi            (ecg) the MAE decoder's attention biased by the distance between
                             tokens (ALiBi, Press et al. 2022), so that it starts out reading the
                             visible tokens near each hidden one (Stage I only)
    stage1                   (ecg) max_epochs, lr and batch_size of this modality's Stage I in
                             place of the stage1 section's (null: the section's); `run_config`
                             moves them into the Stage I run's stage1 section
stage1 / stage2 / stage3     optimization of each stage
    max_epochs, batch_size   epochs (upper bound: early stopping may end sooner), batch size
    lr                       peak learning rate (stage1, stage2)
    lr_encoder               (stage2) peak lr of the pre-trained encoders (null: lr); the
                             projections and temperatures train at lr
    lr_head, lr_encoder      (stage3) head and pre-trained encoder learning rates (1e-3, 1e-4)
    lr_encoder_scratch       (stage3) encoder lr when it starts from random weights (a
                             supervised baseline has no pre-trained features to protect)
    max_epochs_scratch       (stage3) max_epochs when the encoder starts from random weights
                             (null: max_epochs): it has only Stage III to learn in
    weight_decay             AdamW decoupled weight decay (not on biases, norms, tokens)
    warmup_epochs            linear warm-up, then cosine decay per step to min_lr_ratio * lr
    min_lr_ratio             floor of the cosine schedule as a fraction of the peak lr
    patience                 early stopping: epochs without a lower validation loss
    augment                  random resized crop / rotation / scaling of localizer training
                             batches (see `augment`); never applied to other modalities
    augment_rigid            random rotation and translation of image training batches
                             (localizer, CMR; see `rigid`): unlike `augment` it keeps the
                             apparent heart size; the paper: off
    augment_ecg              random circular time shift of each training ECG (the phenotypes
                             do not depend on where a 10-s record starts); the paper: off
    projection_dim           (stage2) shared space width (256)
    projection_hidden        (stage2) hidden width of Linear-GELU-Linear (null: encoder dim)
    temperatures             (stage2) initial temperature per pair, "localizer-ecg" 0.1,
                             "localizer-tabular" 0.25 (public code), "ecg-tabular"
    learn_temperature        (stage2) temperatures are trained (true) or fixed
    temperature_bounds       (stage2) [min, max] clamp of every temperature
    ecg_tabular              (stage2) add the ECG-tabular term (an ablation; C-TRIP: false)
    hidden, dropout          (stage3) regression MLP widths [512, 256] and dropout 0.3
augment                      crop_scale (area fraction range), crop_ratio (aspect range),
                             rotation_deg (uniform +-), scale (zoom range)
rigid                        rotation_deg (uniform +-), translate (uniform +-, a fraction of the
                             image side, along each axis)
trainer                      accelerator ("auto", "cpu", "gpu"), devices, num_nodes, strategy
                             ("auto", "ddp", ...), precision ("32-true", "bf16-mixed", ...),
                             num_workers (data loader processes), enable_progress_bar,
                             log_every_n_steps, deterministic, threads (CPU threads of torch
                             and of the run's kernel: a parameter, so that the numbers do not
                             depend on how many runs execute at once), quiet (hide Lightning's
                             info lines)

Profiles (`ctrip/profiles/<name>.yaml`, the one registry: cohort sizes, training overrides,
sweeps) override these defaults under their `config:` key; `make_config("paper")` reads them.
`run_config` cuts the full config down to what one run reads, so that its cache key changes
only when something it uses changes.

Settings
--------
The settings tree of a pipeline: `experiments.yaml`, a profile, `--cohort` and `--set`.

`load_settings` merges `ctrip/pipeline/experiments.yaml` with the profile
(`ctrip/profiles/<name>.yaml`, the one registry of profiles) using the one merge function
(`merge_config`), applies every `--set key=value` with the one dotted setter
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

from ctrip.data.schema import CP_NAMES, IMAGE_MODALITIES, MODALITIES, SPLITS

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"

# The encoder/decoder sizes every modality starts from at the default profile.
_TRANSFORMER = {
    "dim": 64,
    "depth": 2,
    "heads": 4,
    "mlp_ratio": 4.0,
    "decoder_dim": 32,
    "decoder_depth": 1,
    "decoder_heads": 4,
    "mask_ratio": 0.75,
    "pool": "cls",
}
# Images: the patch-local hMLP stem and mean-pooled tokens learn from a few thousand subjects
# (measured with benchmarks/bench_localizer_recipe.py); the paper profile restores ViT's own.
_IMAGE_MODEL = {"patch_size": 8, **_TRANSFORMER, "stem": "hmlp", "pool": "mean"}

DEFAULT_CONFIG: dict[str, Any] = {
    "models": {
        "localizer": dict(_IMAGE_MODEL),
        "cmr": dict(_IMAGE_MODEL),
        "ecg": {
            "rate_hz": 100,
            "patch_seconds": 0.2,
            "per_lead": False,
            "highpass_hz": 0.67,
            "decoder_alibi": False,
            "stage1": {"max_epochs": None, "lr": None, "batch_size": None},
            **_TRANSFORMER,
        },
        "tabular": dict(_TRANSFORMER),
    },
    "stage1": {
        "max_epochs": 30,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 0.05,
        "warmup_epochs": 2,
        "min_lr_ratio": 0.01,
        "patience": 8,
        "augment": True,
        "augment_rigid": False,
        "augment_ecg": False,
    },
    "stage2": {
        "max_epochs": 20,
        "batch_size": 64,
        "lr": 1e-3,
        "lr_encoder": None,
        "weight_decay": 0.05,
        "warmup_epochs": 1,
        "min_lr_ratio": 0.01,
        "patience": 6,
        # no localizer augmentation: crops and zooms change the apparent heart size, which is
        # what the ECG and the record share with the localizer (bench_localizer_recipe --mode align)
        "augment": False,
        "augment_rigid": False,
        "augment_ecg": False,
        "projection_dim": 256,
        "projection_hidden": None,
        "temperatures": {"localizer-ecg": 0.1, "localizer-tabular": 0.25, "ecg-tabular": 0.1},
        "learn_temperature": True,
        "temperature_bounds": [0.01, 1.0],
        "ecg_tabular": False,
    },
    "stage3": {
        "max_epochs": 25,
        "batch_size": 64,
        "lr_head": 1e-3,
        "lr_encoder": 1e-4,
        "lr_encoder_scratch": 1e-3,
        "max_epochs_scratch": None,
        "weight_decay": 0.05,
        "warmup_epochs": 1,
        "min_lr_ratio": 0.01,
        "patience": 6,
        "augment": False,
        "augment_rigid": False,
        "augment_ecg": False,
        "hidden": [512, 256],
        "dropout": 0.3,
    },
    "augment": {
        "crop_scale": [0.7, 1.0],
        "crop_ratio": [0.75, 1.3333],
        "rotation_deg": 10.0,
        "scale": [0.9, 1.1],
    },
    # +-10 degrees as the paper's warp; +-0.0625 of the side is +-8.75 mm of the 140-mm crop,
    # a uniform shift whose SD (5 mm) is the simulated centring error of the crop
    "rigid": {"rotation_deg": 10.0, "translate": 0.0625},
    "trainer": {
        "accelerator": "auto",
        "devices": 1,
        "num_nodes": 1,
        "strategy": "auto",
        "precision": "32-true",
        "num_workers": 0,
        "enable_progress_bar": False,
        "log_every_n_steps": 50,
        "deterministic": False,
        "threads": 1,
        "quiet": True,
    },
}


def merge_config(
    base: dict[str, Any], overrides: dict[str, Any] | None, strict: bool = True
) -> dict[str, Any]:
    """A deep copy of `base` with `overrides` merged in, recursing into dicts: the one merge
    function of configs and settings. With `strict`, a key absent from `base` is an error
    (except under `stage2.temperatures`, where any pair name may be given)."""
    merged = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if strict and key not in merged and key != "temperatures":
            raise KeyError(f"unknown config key {key!r}; known: {sorted(merged)}")
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            if key == "temperatures":
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = merge_config(merged[key], value, strict)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def profile_file(profile: str | Path) -> Path:
    """The YAML file of a profile: a name in `ctrip/profiles/` or a path."""
    path = Path(profile)
    if not path.suffix:
        path = PROFILES_DIR / f"{profile}.yaml"
    if not path.exists():
        raise FileNotFoundError(
            f"profile {str(profile)!r} not found ({path}); known: {available_profiles()}"
        )
    return path


def load_profile(profile: str | Path) -> dict[str, Any]:
    """A profile's settings as written in its file (cohort, sweep, config overrides, ...)."""
    path = profile_file(profile)
    settings = yaml.safe_load(path.read_text()) or {}
    if not isinstance(settings, dict):
        raise ValueError(f"{path}: a profile is a mapping of settings")
    return settings


def make_config(
    profile: str | Path = "default", overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The full training configuration of `profile` ("smoke", "default", "paper" or a profile
    file): DEFAULT_CONFIG, the profile's `config:` overrides, then `overrides`."""
    return merge_config(
        merge_config(DEFAULT_CONFIG, load_profile(profile).get("config") or {}), overrides
    )


def stage2_pairs(pairs: Sequence[Sequence[str]], ecg_tabular: bool) -> tuple[list[str], bool]:
    """Auxiliary modalities of localizer-anchored pairs (either order); an ("ecg", "tabular")
    pair turns the ECG-tabular ablation term on."""
    auxiliary: list[str] = []
    for pair in pairs:
        a, b = pair
        if set(pair) == {"ecg", "tabular"}:
            ecg_tabular = True
        elif "localizer" in pair and a != b:
            other = b if a == "localizer" else a
            if other not in MODALITIES:
                raise ValueError(f"unknown modality {other!r} in pair {tuple(pair)}")
            if other not in auxiliary:
                auxiliary.append(other)
        else:
            raise ValueError(
                f"pair {tuple(pair)}: Stage II pairs are localizer-anchored, e.g. "
                "('localizer', 'ecg'); only ('ecg', 'tabular') is allowed besides, as an ablation"
            )
    if not auxiliary:
        raise ValueError("Stage II needs at least one pair with the localizer")
    return auxiliary, ecg_tabular


# Model keys that only Stage I's masked autoencoder reads (`ctrip.stages.build.new_mae`).
STAGE1_ONLY_MODEL_KEYS = ("decoder_dim", "decoder_depth", "decoder_heads", "decoder_alibi",
                          "mask_ratio")  # fmt: skip


def run_config(
    config: dict[str, Any],
    stage: str,
    modalities: Sequence[str],
    pairs: Sequence[Sequence[str]] | None = None,
) -> dict[str, Any]:
    """What one run of `stage` on `modalities` reads of the full `config`: their models (after
    Stage I without the masked autoencoder's keys), the stage's section (Stage I: with the
    modality's own `stage1` settings; Stage II: only the temperatures of its pairs), the
    augmentation when image batches are augmented, and the trainer. The plan gives this to the
    notebook, which trains with it and stores it in the checkpoint."""
    section = copy.deepcopy(config[stage])
    models = list(modalities)
    if stage == "stage1" and len(models) == 1:  # the modality's own Stage I settings
        own = config["models"][models[0]].get("stage1") or {}
        section.update({k: v for k, v in own.items() if v is not None})
    if stage == "stage2":
        auxiliary, ecg_tabular = stage2_pairs(pairs or [], section["ecg_tabular"])
        models = ["localizer", *auxiliary]
        used = [f"localizer-{m}" for m in auxiliary] + (["ecg-tabular"] if ecg_tabular else [])
        section["temperatures"] = {k: v for k, v in section["temperatures"].items() if k in used}
    out: dict[str, Any] = {
        "models": {m: _model_section(config["models"][m], stage) for m in models},
        stage: section,
        "trainer": copy.deepcopy(config["trainer"]),
    }
    if "localizer" in models and section.get("augment"):
        out["augment"] = copy.deepcopy(config["augment"])
    if set(models) & set(IMAGE_MODALITIES) and section.get("augment_rigid"):
        out["rigid"] = copy.deepcopy(config["rigid"])
    return out


def _model_section(model: dict[str, Any], stage: str) -> dict[str, Any]:
    """A run's copy of a model's config, without the keys it does not read, so that they change
    no other run's cache key: `stage1` (in the Stage I section instead) and, outside Stage I,
    the masking and the decoder, which exist only in Stage I's masked autoencoder (a masking
    ablation leaves the keys of Stages II and III alone)."""
    unread = {"stage1", *(STAGE1_ONLY_MODEL_KEYS if stage != "stage1" else ())}
    return {k: copy.deepcopy(v) for k, v in model.items() if k not in unread}


def set_key(tree: dict[str, Any], dotted: str, value: Any, what: str = "set_key") -> dict[str, Any]:
    """A copy of `tree` with the dotted key (e.g. "stage1.lr") set to `value`: the one dotted
    setter. The first part must name an existing section (catches typos); within a training
    config (a tree holding "trainer", or the "config" section of settings) every part must
    exist."""
    *parents, last = dotted.split(".")
    override: dict[str, Any] = {}
    node = override
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    head = dotted.split(".")[0]
    if head not in tree:
        raise KeyError(f"{what} {dotted}: unknown section {head!r}; sections: {sorted(tree)}")
    if "trainer" in tree:
        return merge_config(tree, override)
    if head == "config":
        return {**tree, "config": merge_config(tree["config"], override["config"])}
    return merge_config(tree, override, strict=False)


# ============================================================================ settings

EXPERIMENTS_FILE = Path(__file__).resolve().parent / "pipeline" / "experiments.yaml"
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
    written = load_profile(path)
    why = profile_why(written.pop("why", None), path)
    settings = merge_config(yaml.safe_load(EXPERIMENTS_FILE.read_text()), written,
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
    settings["why"] = why  # documentation, not a setting: no key or override reads it
    return settings


def profile_why(why: Any, path: Path) -> dict[str, str]:
    """A profile's `why:`: departure from the paper (a row of the book's profile table, e.g.
    `lr_encoder`) -> the short reason the book prints beside it."""
    if why is None:
        return {}
    if not isinstance(why, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in why.items()
    ):
        raise SettingsError(f"{path}: why: a mapping of departure -> reason (non-empty text)")
    return {k: " ".join(v.split()) for k, v in why.items()}


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
    "config.models.*.stage1.batch_size": _POSITIVE,
    "config.stage?.max_epochs*": _POSITIVE, "config.stage?.batch_size": _POSITIVE,
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
    "reference_baselines.lr": _POSITIVE, "reference_baselines.standard_cnn_seeds.*": _NONNEGATIVE,
    "reference_baselines.standard_cnn_epochs": _POSITIVE,
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
    "config.models.*.stage1.batch_size": (int, type(None)),
    "config.stage2.lr_encoder": (int, float, type(None)),
    "config.stage2.projection_hidden": (int, type(None)),
    "config.stage3.max_epochs_scratch": (int, type(None)),
    "config.trainer.devices": (int, str, list),
    "cohort.path": (str,),
    "cohort.sizes.localizer_fov_mm": (int, float, type(None)),
    "run.init": (str, type(None)),
    "run.sweeps.*": (str, list),  # a method's Stage III run folder, or its runs' (split sweep)
    "run.ceiling_reference_subjects": (int, type(None)),
    "run.ceiling_neural": (bool, type(None)),
    "run.changed.*": (list,),  # an ablation's setting: [base value, ablation value]
    "reference_baselines.standard_cnn_seeds.*": (int,),
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
    "sweeps": {"*": [""]},
    "init": None, "method": "", "names": [""], "labels": {"*": ""}, "modalities": ["localizer"],
    "inference_modalities": {"*": "localizer"}, "simulated": True, "n_bootstrap": 0,
    "ceiling_reference_subjects": None, "ceiling_neural": None, "changed": {"*": None},
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
            "cohort": cohort, "seed": 0, "jobs": 1,
            "sweep": {"fractions": [1.0], "seeds": [0], "split": False},
            "ablations": {"*": [""]}}  # fmt: skip


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
    standard = settings["reference_baselines"]["standard_cnn_seeds"]
    extra = sorted(set(standard) - set(sweep["seeds"]))
    if extra or (standard and not any(math.isclose(f, 1.0) for f in sweep["fractions"])):
        raise SettingsError(
            f"reference_baselines.standard_cnn_seeds: {standard} needs sweep.fractions to hold 1.0 "
            f"and sweep.seeds {sweep['seeds']} to hold each of its seeds (the standard CNN is set "
            "beside the runs of the same seed on the whole training split)"
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
               "stage3": "run.sweeps", "references": "run.folder", "data_card": "run.folder",
               **{k: f"table2.{k}" for k in ("cps", "yardstick_cps", "loa_cps", "fraction",
                                             "n_bootstrap", "bootstrap_seed")},
               "compare_with": "run.method", "simulated": "run.simulated"},
    "fraction_curves": {**_COMMON, "methods": "run.labels", "stage3": "run.sweeps",
                        "references": "run.folder", "cps": "figures.fraction_curves.cps",
                        "n_bootstrap": "run.n_bootstrap", "table2": "run.folder",
                        "baseline": "figures.attention.baseline",
                        "method": "figures.attention.method", "simulated": "run.simulated"},
    "reference_baselines": {**_COMMON, "modalities": "run.modalities",
                            "fractions": "sweep.fractions", "seeds": "sweep.seeds",
                            **{k: f"reference_baselines.{k}" for k in ("epochs", "batch_size", "lr",
                               "standard_cnn_seeds", "standard_cnn_epochs")}},
    "screening": {**_COMMON, "methods": "run.labels", "stage3": "run.sweeps",
                  **{k: f"screening.{k}" for k in ("level", "flags", "coverage_methods",
                                                   "n_bootstrap", "bootstrap_seed")}},
    "attention_maps": {**_COMMON, "labels": "run.labels", "stage3": "run.sweeps",
                       **{k: f"figures.attention.{k}" for k in ("baseline", "method", "n_subjects",
                          "n_measure", "target_cp", "ig_steps", "n_bootstrap", "seed")}},
    "ablation": {"out_dir": "run.out_dir", "name": "run.method", "changed": "run.changed",
                 "labels": "run.labels", "base_dir": "run.folder", "base_stage3": "run.labels",
                 "base_keys": "run.labels", "stage3": "run.folders", "runs": "run.folders",
                 **{k: f"table2.{k}" for k in ("cps", "fraction", "n_bootstrap", "bootstrap_seed")}},
    "umaps": {**_COMMON, "before": "run.folders", "after": "run.folder", "pairs": "methods.*.pairs",
              "simulated": "run.simulated", "stage2": "run.folders", "labels": "run.labels",
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
