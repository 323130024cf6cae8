"""Inference: one batched loop for predictions and embeddings, used by the Stage III recipe,
the notebooks and `ctrip predict`.

    load_regressor(stage3_ckpt).predict_cps(x)          -> CPs (B, 18) in their units
    predictions_frame(regressor, cohort)                 -> id, split, <CP>_pred, <CP>_ref
    embed(checkpoint, cohort, "localizer", "test")        -> (ids, features (N, D))
    predict_arrays(regressor, images)                    -> CPs (N, 18) for (N, 3, H, W)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from ctrip.data.cohort import Cohort
from ctrip.data.dataset import CohortDataset, NormalizationStats
from ctrip.data.schema import CP_NAMES
from ctrip.models import Encoder, RegressionHead
from ctrip.stages.checkpoint import build_checked, encoder_from, projection_from, read_checkpoint
from ctrip.stages.inputs import modality_input

# Subjects per batch: a ViT's activations for 64 stay in the CPU's caches, those for 256 do not
# (one thread, the default localizer model: 0.36 vs 0.59 ms per subject; bench_train.py).
EVAL_BATCH = 64


class CPRegressor(nn.Module):
    """A Stage III model ready for inference: encoder + head + the normalization that turns
    its z-scores back into CP units."""

    def __init__(
        self, encoder: Encoder, head: RegressionHead, modality: str, stats: NormalizationStats
    ) -> None:
        super().__init__()
        self.encoder, self.head, self.modality, self.stats = encoder, head, modality, stats
        self.cp_names = list(CP_NAMES)

    @property
    def input_shape(self) -> tuple[int, ...] | dict[str, int]:
        """(3, H, W) for images, (leads, T) for ECG, feature counts for tabular."""
        spec = self.encoder.tokenizer.spec()
        if spec["kind"] == "image":
            return (spec["in_chans"], *spec["image_size"])
        if spec["kind"] == "ecg":
            return (spec["leads"], spec["length"])
        return {"tab_num": spec["n_numerical"], "tab_cat": len(spec["cardinalities"])}

    def forward(self, x: Any) -> torch.Tensor:
        """z-scored CPs (B, 18)."""
        return self.head(self.encoder.features(x))

    @torch.no_grad()
    def predict_cps(self, x: Any) -> np.ndarray:
        """CPs in their units (B, 18), in CP_NAMES order."""
        self.eval()
        return self.stats.denormalize_targets(self(x))


def load_regressor(checkpoint: str | Path) -> CPRegressor:
    """The Stage III model of a checkpoint, for `predict_cps` on new subjects."""
    ckpt = read_checkpoint(checkpoint, kinds=("stage3",))
    encoder = encoder_from(ckpt, ckpt["modality"], checkpoint)
    head_entry = ckpt["head"] if isinstance(ckpt["head"], dict) else {}
    spec = head_entry.get("spec")
    head = build_checked(
        lambda: RegressionHead(spec["in_dim"], spec["out_dim"], spec["hidden"], spec["dropout"]),
        _head_layout, spec, head_entry.get("state_dict"), checkpoint, "head.spec",
    )  # fmt: skip
    stats = NormalizationStats.from_dict(ckpt["stats"])
    return CPRegressor(encoder, head, ckpt["modality"], stats).eval()


def _head_layout(spec: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Stored weight shapes of a `RegressionHead` (BatchNorm, then three linears)."""
    (h1, h2), n_in, n_out = spec["hidden"], spec["in_dim"], spec["out_dim"]
    return {"0.weight": (n_in,), "1.weight": (h1, n_in), "4.weight": (h2, h1),
            "6.weight": (n_out, h2)}  # fmt: skip


@torch.no_grad()
def run_batches(
    model: Callable[[Any], torch.Tensor], batches: Iterable[Any], width: int
) -> np.ndarray:
    """`model` over every batch in eval mode, outputs concatenated: (N, width) float32."""
    if isinstance(model, nn.Module):
        model.eval()
    out = [model(batch).float().cpu().numpy() for batch in batches]
    return np.concatenate(out) if out else np.zeros((0, width), dtype=np.float32)


def _dataset_batches(dataset: CohortDataset, modality: str, batch_size: int) -> Iterable[Any]:
    return (modality_input(b, modality) for b in DataLoader(dataset, batch_size=batch_size))


def predictions_frame(model: CPRegressor, cohort: Cohort, splits: Sequence[str] = ("val", "test"),
                      tabular_variant: str = "T", batch_size: int = EVAL_BATCH) -> pd.DataFrame:  # fmt: skip
    """id, split, <CP>_pred, <CP>_ref (CP units) for every subject of `splits`."""
    frames = []
    for split in splits:
        ds = CohortDataset(
            cohort, (model.modality,), split, stats=model.stats, tabular_variant=tabular_variant
        )
        z = run_batches(model, _dataset_batches(ds, model.modality, batch_size), len(CP_NAMES))
        pred = model.stats.denormalize_targets(z)
        frame = pd.DataFrame({"id": ds.ids, "split": split})
        for j, cp in enumerate(CP_NAMES):
            frame[f"{cp}_pred"] = pred[:, j]
            frame[f"{cp}_ref"] = ds.targets_raw[:, j].astype(np.float64)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def embed(checkpoint: str | Path, cohort: Cohort, modality: str, split: str = "test",
          projected: bool = False, batch_size: int = EVAL_BATCH) -> tuple[list[str], np.ndarray]:  # fmt: skip
    """(subject ids, features (N, D)) of `split`: the encoder's pooled feature, or with
    `projected` (Stage II checkpoints) its projection into the shared space."""
    ckpt = read_checkpoint(checkpoint)
    encoder = encoder_from(ckpt, modality, checkpoint).eval()
    features: Callable[[Any], torch.Tensor] = encoder.features
    width = encoder.dim
    if projected:
        projection = projection_from(ckpt, modality, checkpoint)
        features, width = (lambda x: projection(encoder.features(x))), projection.out_dim
    stats = NormalizationStats.from_dict(ckpt["stats"])
    ds = CohortDataset(
        cohort, (modality,), split, stats=stats, tabular_variant=ckpt["tabular_variant"]
    )
    return ds.ids, run_batches(features, _dataset_batches(ds, modality, batch_size), width)


def predict_arrays(regressor: CPRegressor, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """CPs (N, 18) in CP units for image model inputs (N, 3, H, W)."""
    batches = (
        torch.from_numpy(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)
    )
    return regressor.stats.denormalize_targets(run_batches(regressor, batches, len(CP_NAMES)))
