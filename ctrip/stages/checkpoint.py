"""The checkpoint format of the three stages: one writer, one reader.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(path, weights_only=True)` (no pickled code runs). Every kind holds:

    kind ("stage1", "stage2", "stage3"), ctrip_version, config (the run's resolved config),
    seed, cohort (what inference needs of the training cohort: {"localizer_fov_mm": ...};
    checkpoints written before it was recorded hold the cohort's folder instead), tabular_variant,
    stats (NormalizationStats as a dict),
    specs ({modality: encoder spec}), encoders ({modality: state dict}), history (per-epoch
    losses), best_epoch, best_val_loss

and per kind: stage1 "modality", "mae" (spec + state dict of the whole autoencoder); stage2
"pairs", "init", "projections", "temperatures"; stage3 "modality", "head", "frozen",
"fraction", "init", "n_train". An "init" names the checkpoint a run started from by its file name
and sha256 (`checkpoint_identity`). No field holds a path of the machine it was written on, so
the same training writes the same bytes in any results folder.

A model is rebuilt from its stored spec only after `build_checked` has compared the spec's sizes
with the stored weight shapes, so a damaged or hostile spec is a one-line error, not gigabytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ctrip.io.errors import check_regular_file
from ctrip.models import Encoder, MaskedAutoencoder, ProjectionHead, build_encoder, build_mae

ModuleT = TypeVar("ModuleT", bound=nn.Module)

KINDS = ("stage1", "stage2", "stage3")
COMMON_FIELDS = ("kind", "config", "seed", "cohort", "tabular_variant", "stats", "specs",
                 "encoders", "history", "best_epoch")  # fmt: skip
# A spec is checked against the stored weights before its model is built (building allocates
# and initializes every weight: dim=16384, depth=64 is 5.5 GB). The bounds keep the sizes that
# no weight records (positional tables) small: the paper's ViT-B has 12 blocks of 12 heads,
# 768 dims and 196 tokens; a 10 s ECG at 500 Hz is 5000 samples.
SPEC_LIMITS = {"depth": 256, "heads": 256, "decoder_depth": 256, "decoder_heads": 256,
               "length": 1 << 22, "resample_to": 1 << 22}  # fmt: skip
MAX_SPEC_SIZE = 1 << 16  # any other count: dims, patch sizes, image sides, features
MAX_TOKENS = 1 << 16
KIND_FIELDS = {
    "stage1": ("modality", "mae"),
    "stage2": ("pairs", "projections", "temperatures"),
    "stage3": ("modality", "head", "frozen", "fraction", "init"),
}


def state_of(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state dict, as checkpoints store it."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def cohort_facts(cohort: Any) -> dict[str, Any]:
    """What a checkpoint keeps of its training cohort (an opened `Cohort`): the localizer field
    of view (mm) `ctrip predict` crops new localizers to."""
    from ctrip.io.preprocess import localizer_field_of_view_mm

    return {"localizer_fov_mm": float(localizer_field_of_view_mm(cohort.manifest))}


def checkpoint_identity(path: str | Path) -> dict[str, str]:
    """A checkpoint named by its file name and sha256 (what a later stage records as its init)."""
    from ctrip.data.cohort import sha256_of

    return {"file": Path(path).name, "sha256": sha256_of(Path(path))}


def write_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write `checkpoint` after checking it holds the fields of its kind."""
    path = Path(path)
    _check_fields(checkpoint, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def read_checkpoint(path: str | Path, kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    """A checkpoint dict loaded with `weights_only=True`, checked to be of one of `kinds`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    check_regular_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as err:  # torch.load of a text file raises KeyError, IndexError, ...
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    kind = ckpt.get("kind") if isinstance(ckpt, dict) else None
    if kind not in KINDS:
        raise ValueError(f"{path}: not a C-TRIP checkpoint (no kind stage1/2/3)")
    if kind not in kinds:
        raise ValueError(f"{path}: a {kind} checkpoint; expected {' or '.join(kinds)}")
    _check_fields(ckpt, path)
    return ckpt


def _check_fields(ckpt: dict[str, Any], path: Path) -> None:
    missing = [f for f in (*COMMON_FIELDS, *KIND_FIELDS[ckpt["kind"]]) if f not in ckpt]
    if missing:
        fields = ", ".join(repr(f) for f in missing)
        raise ValueError(f"{path}: field {fields} missing from the {ckpt['kind']} checkpoint")


def _load_state(module: nn.Module, state: Any, path: Path, what: str) -> None:
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"{path}: the {what} weights do not fit their spec ({first})") from None


def build_checked(
    build: Callable[[], ModuleT],
    layout: Callable[[dict[str, Any]], dict[str, tuple[int, ...]]],
    spec: Any,
    state: Any,
    path: str | Path,
    field: str,
) -> ModuleT:
    """The module `build()` makes from `spec` (the checkpoint's field `field`) holding the
    weights `state`, after checking the spec's sizes against the stored shapes that
    `layout(spec)` names (`"<prefix>blocks.*": (n,)` for a count of blocks): a spec that asks
    for dim=16384 and depth=64 beside small weights is a one-line error, never built."""
    if not isinstance(spec, dict) or not isinstance(state, dict):
        raise ValueError(f"{path}: field {field} or its weights are not a mapping")
    _check_spec_values(spec, path, field)
    try:
        expected = layout(spec)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
        raise ValueError(f"{path}: field {field} is not a model spec ({err!r})") from None
    for key, shape in expected.items():
        if key.endswith("blocks.*"):
            prefix = key[:-1]
            found = len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})
            problem = None if found == shape[0] else (
                f"the spec has {shape[0]} {prefix[:-1]}, the weights {found}")  # fmt: skip
        else:
            stored = state.get(key)
            stored_shape = list(stored.shape) if isinstance(stored, torch.Tensor) else None
            problem = None if stored_shape == list(shape) else (
                f"{key} is {stored_shape if stored_shape is not None else 'missing'}, the spec "
                f"makes {list(shape)}")  # fmt: skip
        if problem:
            raise ValueError(f"{path}: field {field} does not match the stored weights ({problem})")
    try:
        module = build()
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: field {field} is not a model spec ({err!r})") from None
    _load_state(module, state, Path(path), field)
    return module


def _check_spec_values(spec: dict[str, Any], path: str | Path, field: str) -> None:
    """Every count in a spec is a whole number within `SPEC_LIMITS` (or `MAX_SPEC_SIZE`)."""
    for key, value in spec.items():
        where = f"{field}.{key}"
        if isinstance(value, dict):
            _check_spec_values(value, path, where)
            continue
        if value is None:  # an option left out (resample_to, highpass_hz)
            continue
        limit = SPEC_LIMITS.get(key, MAX_SPEC_SIZE)
        counts = value if isinstance(value, list) else [value]
        numeric = key in ("mlp_ratio", "dropout", "mask_ratio", "input_mean", "input_std",
                          "sampling_rate_hz", "highpass_hz")  # fmt: skip
        if numeric or not all(isinstance(v, int) for v in counts):
            if key in SPEC_LIMITS or key in ("dim", "patch_size", "in_chans", "leads"):
                raise ValueError(f"{path}: field {where} is {value!r}; expected a count")
            if key == "mlp_ratio" and not (isinstance(value, int | float) and 0 < value <= 16):
                raise ValueError(f"{path}: field {where} is {value!r}; expected 0-16")
            continue
        if not all(0 <= v <= limit for v in counts):
            raise ValueError(f"{path}: field {where} is {value!r}; expected counts of 0 to {limit}")


def _tokens(tokenizer: dict[str, Any]) -> int:
    """The tokens a tokenizer spec makes (its positional table has one row per token)."""
    if tokenizer["kind"] == "image":
        rows, cols = tokenizer["image_size"]
        return (rows // tokenizer["patch_size"]) * (cols // tokenizer["patch_size"])
    if tokenizer["kind"] == "ecg":
        windows = (tokenizer.get("resample_to") or tokenizer["length"]) // tokenizer["patch_size"]
        return windows * (tokenizer.get("leads", 12) if tokenizer.get("per_lead", True) else 1)
    return tokenizer["n_numerical"] + len(tokenizer["cardinalities"])


def encoder_layout(spec: dict[str, Any], prefix: str = "") -> dict[str, tuple[int, ...]]:
    """Stored weight shapes that `build_encoder(spec)` makes, for `build_checked`."""
    tokenizer, depth = spec["tokenizer"], spec["depth"]
    dim = tokenizer["dim"]
    tokens = _tokens(tokenizer)
    if tokens > MAX_TOKENS:
        raise ValueError(f"the tokenizer makes {tokens} tokens, above {MAX_TOKENS}")
    shapes: dict[str, tuple[int, ...]] = {
        f"{prefix}cls_token": (1, 1, dim),
        f"{prefix}norm.weight": (dim,),
        f"{prefix}blocks.*": (depth,),
    }
    if depth:
        hidden = int(dim * spec.get("mlp_ratio", 4.0))
        shapes[f"{prefix}blocks.0.mlp.0.weight"] = (hidden, dim)
    patch = tokenizer.get("patch_size", 0)
    if tokenizer["kind"] == "image" and tokenizer.get("stem", "linear") == "linear":
        shapes[f"{prefix}tokenizer.embed.weight"] = (
            dim,
            patch * patch * tokenizer.get("in_chans", 3),
        )
    elif tokenizer["kind"] == "ecg":
        per_lead = tokenizer.get("per_lead", True)
        shapes[f"{prefix}tokenizer.embed.weight"] = (
            dim,
            patch * (1 if per_lead else tokenizer.get("leads", 12)),
        )
    elif tokenizer["kind"] == "tabular":
        shapes[f"{prefix}tokenizer.num_weight"] = (tokenizer["n_numerical"], dim)
        shapes[f"{prefix}tokenizer.feature_embed"] = (1, tokens, dim)
        levels = max(sum(tokenizer["cardinalities"]), 1)
        shapes[f"{prefix}tokenizer.cat_embed.weight"] = (levels, dim)
    return shapes


def _mae_layout(spec: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    decoder_dim, depth = spec["decoder_dim"], spec["decoder_depth"]
    shapes = {**encoder_layout(spec["encoder"], "encoder."), "mask_token": (1, 1, decoder_dim),
              "decoder_embed.weight": (decoder_dim, spec["encoder"]["tokenizer"]["dim"]),
              "decoder_blocks.*": (depth,)}  # fmt: skip
    if depth:
        hidden = int(decoder_dim * spec["encoder"].get("mlp_ratio", 4.0))
        shapes["decoder_blocks.0.mlp.0.weight"] = (hidden, decoder_dim)
    return shapes


def _projection_layout(spec: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    hidden = spec.get("hidden_dim") or spec["in_dim"]
    return {"0.weight": (hidden, spec["in_dim"]), "2.weight": (spec.get("out_dim", 256), hidden)}


def encoder_from(ckpt: dict[str, Any], modality: str, path: str | Path) -> Encoder:
    """The `modality` encoder held by a checkpoint dict read from `path`."""
    if modality not in ckpt["specs"] or modality not in ckpt["encoders"]:
        raise ValueError(
            f"{path}: this {ckpt['kind']} checkpoint has no {modality} encoder "
            f"(it has {sorted(ckpt['specs'])})"
        )
    spec, state = ckpt["specs"][modality], ckpt["encoders"][modality]
    return build_checked(
        lambda: build_encoder(spec), encoder_layout, spec, state, path, f"specs.{modality}"
    )


def load_encoder(checkpoint: str | Path, modality: str) -> Encoder:
    """The `modality` encoder of any stage checkpoint, in eval mode. Its
    `forward(x, return_attention=True)` gives the attention of every block."""
    return encoder_from(read_checkpoint(checkpoint), modality, checkpoint).eval()


def projection_from(ckpt: dict[str, Any], modality: str, path: str | Path) -> ProjectionHead:
    """The Stage II projection head of `modality` held by a checkpoint dict."""
    if ckpt["kind"] != "stage2" or modality not in ckpt.get("projections", {}):
        raise ValueError(f"{path}: no Stage II projection for {modality}")
    entry = ckpt["projections"][modality]
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: field projections.{modality} is not a mapping")
    spec, field = entry.get("spec"), f"projections.{modality}.spec"
    return build_checked(
        lambda: ProjectionHead(**spec), _projection_layout, spec, entry.get("state_dict"), path,
        field,
    ).eval()  # fmt: skip


def load_mae(checkpoint: str | Path) -> MaskedAutoencoder:
    """The whole Stage I autoencoder (encoder and decoder), e.g. to show reconstructions."""
    ckpt = read_checkpoint(checkpoint, kinds=("stage1",))
    entry = ckpt["mae"] if isinstance(ckpt["mae"], dict) else {}
    spec = entry.get("spec")
    mae = build_checked(lambda: build_mae(spec), _mae_layout, spec, entry.get("state_dict"),
                        checkpoint, "mae.spec")  # fmt: skip
    return mae.eval()
