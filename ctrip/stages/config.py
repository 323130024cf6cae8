"""Training configuration: one plain nested dict (JSON/YAML-serializable), so that profiles,
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
    stage1                   (ecg) max_epochs and lr of this modality's Stage I in place of the
                             stage1 section's (null: the section's); `run_config` moves them
                             into the Stage I run's stage1 section
stage1 / stage2 / stage3     optimization of each stage
    max_epochs, batch_size   epochs (upper bound: early stopping may end sooner), batch size
    lr                       peak learning rate (stage1, stage2)
    lr_encoder               (stage2) peak lr of the pre-trained encoders (null: lr); the
                             projections and temperatures train at lr
    lr_head, lr_encoder      (stage3) head and pre-trained encoder learning rates (1e-3, 1e-4)
    lr_encoder_scratch       (stage3) encoder lr when it starts from random weights (a
                             supervised baseline has no pre-trained features to protect)
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
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"

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
            "stage1": {"max_epochs": None, "lr": None},
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
    from ctrip.data.schema import MODALITIES

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


def run_config(
    config: dict[str, Any],
    stage: str,
    modalities: Sequence[str],
    pairs: Sequence[Sequence[str]] | None = None,
) -> dict[str, Any]:
    """What one run of `stage` on `modalities` reads of the full `config`: their models, the
    stage's section (Stage II: only the temperatures of its pairs), the augmentation when
    image batches are augmented, and the trainer. The plan gives this to the notebook,
    which trains with it and stores it in the checkpoint."""
    from ctrip.data.schema import IMAGE_MODALITIES

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
    `decoder_alibi`."""
    unread = {"stage1"} | ({"decoder_alibi"} if stage != "stage1" else set())
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
