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

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctrip.models import Encoder, MaskedAutoencoder, ProjectionHead, build_encoder, build_mae

KINDS = ("stage1", "stage2", "stage3")
COMMON_FIELDS = ("kind", "config", "seed", "cohort", "tabular_variant", "stats", "specs",
                 "encoders", "history", "best_epoch")  # fmt: skip
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
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({err})") from None
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


def encoder_from(ckpt: dict[str, Any], modality: str, path: str | Path) -> Encoder:
    """The `modality` encoder held by a checkpoint dict read from `path`."""
    if modality not in ckpt["specs"] or modality not in ckpt["encoders"]:
        raise ValueError(
            f"{path}: this {ckpt['kind']} checkpoint has no {modality} encoder "
            f"(it has {sorted(ckpt['specs'])})"
        )
    try:
        encoder = build_encoder(ckpt["specs"][modality])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: specs.{modality} is not an encoder spec ({err!r})") from None
    _load_state(encoder, ckpt["encoders"][modality], Path(path), f"{modality} encoder")
    return encoder


def load_encoder(checkpoint: str | Path, modality: str) -> Encoder:
    """The `modality` encoder of any stage checkpoint, in eval mode. Its
    `forward(x, return_attention=True)` gives the attention of every block."""
    return encoder_from(read_checkpoint(checkpoint), modality, checkpoint).eval()


def projection_from(ckpt: dict[str, Any], modality: str, path: str | Path) -> ProjectionHead:
    """The Stage II projection head of `modality` held by a checkpoint dict."""
    if ckpt["kind"] != "stage2" or modality not in ckpt.get("projections", {}):
        raise ValueError(f"{path}: no Stage II projection for {modality}")
    entry = ckpt["projections"][modality]
    head = ProjectionHead(**entry["spec"])
    _load_state(head, entry["state_dict"], Path(path), f"{modality} projection")
    return head.eval()


def load_mae(checkpoint: str | Path) -> MaskedAutoencoder:
    """The whole Stage I autoencoder (encoder and decoder), e.g. to show reconstructions."""
    ckpt = read_checkpoint(checkpoint, kinds=("stage1",))
    mae = build_mae(ckpt["mae"]["spec"])
    _load_state(mae, ckpt["mae"]["state_dict"], Path(checkpoint), "autoencoder")
    return mae.eval()
