"""The checkpoint format of the three stages: one writer, one reader.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(path, weights_only=True)` (no pickled code runs). Every kind holds:

    kind ("stage1", "stage2", "stage3"), ctrip_version, config (the run's resolved config),
    seed, cohort (its folder), tabular_variant, stats (NormalizationStats as a dict),
    specs ({modality: encoder spec}), encoders ({modality: state dict}), history (per-epoch
    losses), best_epoch, best_val_loss

and per kind: stage1 "modality", "mae" (spec + state dict of the whole autoencoder); stage2
"pairs", "init", "projections", "temperatures"; stage3 "modality", "head", "frozen",
"fraction", "init", "n_train".
"""

from __future__ import annotations

import re
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
# A spec's model is first built without memory (on torch's "meta" device) and compared with the
# stored weights; these bounds keep that dry build itself small. The paper's ViT-B has 12
# blocks of 12 heads and 86 M parameters; 2^29 elements (2 GiB of float32) is ViT-L's size.
MAX_SPEC_BLOCKS = 256  # depth, heads, decoder_depth, decoder_heads
MAX_MODEL_ELEMENTS = 1 << 29
KIND_FIELDS = {
    "stage1": ("modality", "mae"),
    "stage2": ("pairs", "projections", "temperatures"),
    "stage3": ("modality", "head", "frozen", "fraction", "init"),
}


def state_of(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state dict, as checkpoints store it."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


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
    build: Callable[[], ModuleT], spec: Any, state: Any, path: str | Path, field: str
) -> ModuleT:
    """The module `build()` makes from `spec` (the checkpoint's field `field`) holding the
    weights `state`, after checking the spec against their shapes without allocating: a spec
    that asks for dim=16384 and depth=64 is refused in a one-line error, not built."""
    if not isinstance(spec, dict) or not isinstance(state, dict):
        raise ValueError(f"{path}: field {field} or its weights are not a mapping")
    _check_spec_bounds(spec, path, field)
    try:
        with torch.device("meta"):  # shapes only: no memory, no initialization cost
            skeleton = build()
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: field {field} is not a model spec ({err!r})") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    elements = sum(v.numel() for v in (*skeleton.parameters(), *skeleton.buffers()))
    if elements > MAX_MODEL_ELEMENTS:
        raise ValueError(
            f"{path}: field {field} asks for a model of {elements:.3g} values, above "
            f"{MAX_MODEL_ELEMENTS:.3g}; refused"
        )
    stored = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None
              for k, v in state.items()}  # fmt: skip
    if stored != expected:
        raise ValueError(f"{path}: field {field} does not match the stored weights "
                         f"({_first_difference(expected, stored)})")  # fmt: skip
    module = build()
    _load_state(module, state, Path(path), field)
    return module


def _check_spec_bounds(spec: dict[str, Any], path: str | Path, field: str) -> None:
    for key, value in spec.items():
        if isinstance(value, dict):
            _check_spec_bounds(value, path, f"{field}.{key}")
        elif re.fullmatch(r"(decoder_)?(depth|heads)", key) and not (
            isinstance(value, int) and 0 <= value <= MAX_SPEC_BLOCKS
        ):
            raise ValueError(
                f"{path}: field {field}.{key} is {value!r}; expected a count of 0 to "
                f"{MAX_SPEC_BLOCKS}"
            )


def _first_difference(expected: dict[str, tuple], stored: dict[str, tuple | None]) -> str:
    """What differs first between the spec's weight shapes and the stored ones, in words."""
    missing = [k for k in expected if k not in stored]
    extra = [k for k in stored if k not in expected]
    if missing or extra:
        blocks = {
            name: len({m.group(1) for k in keys if (m := re.match(r"blocks\.(\d+)\.", k))})
            for name, keys in (("spec", expected), ("weights", stored))
        }
        if blocks["spec"] != blocks["weights"]:
            return f"the spec has {blocks['spec']} blocks, the weights {blocks['weights']}"
        return f"weights missing: {missing[:3]}, unexpected: {extra[:3]}"
    key = next(k for k in expected if expected[k] != stored[k])
    found = "not a tensor" if stored[key] is None else list(stored[key])  # type: ignore[arg-type]
    return f"{key} is {found}, the spec makes {list(expected[key])}"


def encoder_from(ckpt: dict[str, Any], modality: str, path: str | Path) -> Encoder:
    """The `modality` encoder held by a checkpoint dict read from `path`."""
    if modality not in ckpt["specs"] or modality not in ckpt["encoders"]:
        raise ValueError(
            f"{path}: this {ckpt['kind']} checkpoint has no {modality} encoder "
            f"(it has {sorted(ckpt['specs'])})"
        )
    spec = ckpt["specs"][modality]
    return build_checked(
        lambda: build_encoder(spec), spec, ckpt["encoders"][modality], path, f"specs.{modality}"
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
        lambda: ProjectionHead(**spec), spec, entry.get("state_dict"), path, field
    ).eval()


def load_mae(checkpoint: str | Path) -> MaskedAutoencoder:
    """The whole Stage I autoencoder (encoder and decoder), e.g. to show reconstructions."""
    ckpt = read_checkpoint(checkpoint, kinds=("stage1",))
    entry = ckpt["mae"] if isinstance(ckpt["mae"], dict) else {}
    spec = entry.get("spec")
    mae = build_checked(lambda: build_mae(spec), spec, entry.get("state_dict"), checkpoint,
                        "mae.spec")  # fmt: skip
    return mae.eval()
