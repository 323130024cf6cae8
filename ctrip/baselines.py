"""Reference baselines: the yardstick every transformer row of the book is compared with.

Four plain predictors of the 18 z-scored CPs, each the simplest standard model of its input:
- `ImageCNN`: a small 2-D CNN for the localizer and cine CMR (four blocks of 3x3 convolution,
  batch norm, ReLU and max-pooling, then global average pooling and a linear head);
- `ECGCNN`: the same recipe in 1-D for the 12-lead ECG (wider kernels, a strided first layer);
- `fit_ridge`: ridge regression on the encoded tabular record, alpha chosen on validation;
- `fit_mean`: the constant training mean, the floor every model must beat.
The networks are trained by `fit_network` (AdamW, one-cycle learning rate, a fixed number of
epochs, the validation-best weights kept), so the pipeline can run any baseline for any split,
fraction and seed from arrays: `baseline_inputs` reads them from a cohort. A transformer row far
below its modality's baseline points at its recipe, not at the method.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from ctrip.data.cohort import Cohort
from ctrip.data.dataset import NormalizationStats, encode_tabular
from ctrip.data.ecg import remove_baseline_drift
from ctrip.data.schema import CP_NAMES
from ctrip.data.splits import nested_fractions

SPLIT_NAMES = ("train", "val", "test")
# Subjects per evaluation batch: activations of 64 stay in the CPU's caches, those of 256 do
# not (one thread: the 2-D CNN 0.39 vs 0.93 ms per localizer, the 1-D CNN 0.37 vs 0.61 ms per
# ECG; `benchmarks/bench_baselines.py`).
EVAL_BATCH = 64

# The book's image yardstick: the cheap 2-D CNN, one 3x3 convolution per block.
CHEAP_IMAGE_CNN = {"widths": (16, 32, 64, 64), "convs_per_block": 1}


class ImageCNN(nn.Module):
    """(B, C, H, W) -> (B, outputs): blocks of `convs_per_block` x [3x3 conv, BN, ReLU] and a
    2x2 max-pool, then global average pooling and a linear head.

    The book's yardstick is the cheap one (`CHEAP_IMAGE_CNN`, the defaults);
    `STANDARD_IMAGE_CNN` is the standard small CNN it is measured against (Table 3d,
    `benchmarks/bench_baselines.py --cohort`)."""

    def __init__(
        self,
        in_channels: int = 3,
        outputs: int = len(CP_NAMES),
        widths: Sequence[int] = CHEAP_IMAGE_CNN["widths"],
        convs_per_block: int = CHEAP_IMAGE_CNN["convs_per_block"],
    ) -> None:
        super().__init__()
        if convs_per_block < 1:
            raise ValueError(f"convs_per_block must be >= 1, got {convs_per_block}")
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            for _ in range(convs_per_block):
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last memory: oneDNN convolutions, batch norm and pooling run 1.6x faster on
        # the CPU (one thread, batch 64: 95 vs 150 ms per step; `benchmarks/bench_baselines.py`)
        return self.head(self.features(x.contiguous(memory_format=torch.channels_last)))


# The standard small 2-D CNN: two 3x3 convolutions per block, widths 32-64-128, trained with
# the yardstick's optimizer (AdamW, one-cycle) for `reference_baselines.standard_cnn_epochs`,
# the validation-best weights kept. The book sets the cheap yardstick beside it where a run
# trains it (`reference_baselines.standard_cnn_seeds`); `benchmarks/bench_baselines.py --cohort`.
STANDARD_IMAGE_CNN = {"widths": (32, 64, 128), "convs_per_block": 2}


def describe_image_cnn(spec: dict) -> str:
    """How the book names an `ImageCNN` design, e.g. "two 3x3 convolutions per block, widths
    32-64-128", from its spec (`CHEAP_IMAGE_CNN`, `STANDARD_IMAGE_CNN`)."""
    n = spec["convs_per_block"]
    count = {1: "one 3x3 convolution", 2: "two 3x3 convolutions"}.get(n, f"{n} 3x3 convolutions")
    return f"{count} per block, widths {'-'.join(map(str, spec['widths']))}"


class ECGCNN(nn.Module):
    """(B, 12, T) -> (B, outputs): a stride-4 first convolution, 4 x [conv, BN, ReLU, max-pool],
    GAP, linear. The stem keeps the QRS band (< 40 Hz) at 250-500 Hz sampling; the receptive
    field after block 2 spans a QRS (~100 ms).

    A 1-D network written with 2-D layers of 1 x k kernels on a (B, C, 1, T) channels-last map:
    the same function as Conv1d / BatchNorm1d / MaxPool1d (tested), but oneDNN has fast 2-D
    kernels for that layout (one thread, batch 64: 72 vs 115 ms per training step;
    `benchmarks/bench_baselines.py`)."""

    def __init__(
        self,
        in_channels: int = 12,
        outputs: int = len(CP_NAMES),
        widths: Sequence[int] = (32, 64, 64, 128),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, widths[0], (1, 9), stride=(1, 4), padding=(0, 4), bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        channels = widths[0]
        for width, kernel in zip(widths, (7, 5, 5, 3)):
            layers += [
                nn.Conv2d(channels, width, (1, kernel), padding=(0, kernel // 2), bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d((1, 2)),
            ]
            channels = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(
            self.features(x.unsqueeze(2).contiguous(memory_format=torch.channels_last))
        )

    def as_conv1d(self) -> nn.Sequential:
        """The same network, weights copied, in Conv1d / BatchNorm1d / MaxPool1d layers on
        (B, C, T): the plain 1-D form, to check this one against and to time it."""
        layers: list[nn.Module] = []
        for layer in self.features:
            if isinstance(layer, nn.Conv2d):
                conv = nn.Conv1d(layer.in_channels, layer.out_channels, layer.kernel_size[1],
                                 layer.stride[1], layer.padding[1], bias=False)  # fmt: skip
                conv.weight.data = layer.weight.data[:, :, 0].clone()
                layers.append(conv)
            elif isinstance(layer, nn.BatchNorm2d):
                norm = nn.BatchNorm1d(layer.num_features, layer.eps, layer.momentum)
                norm.load_state_dict(layer.state_dict())
                layers.append(norm)
            elif isinstance(layer, nn.MaxPool2d):
                layers.append(nn.MaxPool1d(layer.kernel_size[1]))
            elif isinstance(layer, nn.AdaptiveAvgPool2d):
                layers.append(nn.AdaptiveAvgPool1d(1))
            else:
                layers.append(copy.deepcopy(layer))
        return nn.Sequential(*layers, copy.deepcopy(self.head))


@dataclass
class BaselinePredictions:
    """Predictions (z-scored CPs) on validation and test, and how they were chosen."""

    val: np.ndarray
    test: np.ndarray
    chosen: dict = field(default_factory=dict)  # best epoch, alpha, ...
    history: list[dict] = field(default_factory=list)  # per epoch: train and val loss


def _standardizer(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and SD of the training inputs (axis 1 is the channel)."""
    axes = tuple(a for a in range(x_train.ndim) if a != 1)
    mean = x_train.mean(axis=axes, keepdims=True)[0]
    std = x_train.std(axis=axes, keepdims=True)[0]
    return mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)


def _predict(model: nn.Module, x: np.ndarray, mean, std, batch_size: int) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for a in range(0, len(x), batch_size):
            xb = torch.from_numpy((np.asarray(x[a : a + batch_size], np.float32) - mean) / std)
            out.append(model(xb).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.head.out_features), np.float32)


def fit_network(
    model: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    x_test: np.ndarray,
    epochs: int = 30,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    patience: int | None = None,
    progress: bool = False,
) -> BaselinePredictions:
    """Train `model` on z-scored targets (MSE) and predict validation and test.

    AdamW with a one-cycle learning rate over at most `epochs` epochs; inputs standardized per
    channel with training statistics; the weights of the epoch with the lowest validation MSE
    are kept, and with `patience` training stops after that many epochs without a lower one.
    Every random draw (initialization, batch order) comes from `seed`.
    """
    if len(x_train) != len(y_train) or len(x_val) != len(y_val):
        raise ValueError(
            f"inputs and targets differ in length: train {len(x_train)} vs {len(y_train)}, "
            f"val {len(x_val)} vs {len(y_val)}"
        )
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be >= 1 epoch, got {patience}")
    if len(x_train) < 2 or len(x_val) < 1:
        raise ValueError(
            f"need >= 2 training and >= 1 validation subjects, got {len(x_train)}, {len(x_val)}"
        )
    torch.manual_seed(seed)
    for module in model.modules():  # initialization from the seed, whatever came before
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    order_rng = np.random.default_rng(seed)
    mean, std = _standardizer(np.asarray(x_train, np.float32))
    y_train_t = torch.from_numpy(np.asarray(y_train, np.float32))
    steps = int(np.ceil(len(x_train) / batch_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps)
    best, best_loss, history = None, np.inf, []
    for epoch in range(epochs):
        model.train()
        order = order_rng.permutation(len(x_train))
        if len(order) % batch_size == 1:  # BatchNorm cannot train on a batch of one
            order = order[:-1]
        total = 0.0
        for a in range(0, len(order), batch_size):
            rows = np.sort(order[a : a + batch_size])  # sorted: faster reads from a memmap
            xb = torch.from_numpy((np.asarray(x_train[rows], np.float32) - mean) / std)
            loss = nn.functional.mse_loss(model(xb), y_train_t[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(rows)
        val_loss = float(np.mean((_predict(model, x_val, mean, std, EVAL_BATCH) - y_val) ** 2))
        history.append({"epoch": epoch, "train_mse": total / len(order), "val_mse": val_loss})
        if progress:
            print(f"epoch {epoch:3d} train {total / len(order):.4f} val {val_loss:.4f}", flush=True)
        if val_loss < best_loss:
            best_loss, best = val_loss, (epoch, copy.deepcopy(model.state_dict()))
        elif patience is not None and epoch - best[0] >= patience:
            break
    model.load_state_dict(best[1])
    return BaselinePredictions(
        val=_predict(model, x_val, mean, std, EVAL_BATCH),
        test=_predict(model, x_test, mean, std, EVAL_BATCH),
        chosen={"best_epoch": best[0], "val_mse": best_loss},
        history=history,
    )


def fit_ridge(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    x_test: np.ndarray,
    alphas: Sequence[float] = tuple(np.logspace(-3, 4, 15)),
) -> BaselinePredictions:
    """Ridge regression (intercept unpenalized), one alpha for all CPs, chosen on validation MSE."""
    x_train, x_val, x_test = (np.asarray(x, np.float64) for x in (x_train, x_val, x_test))
    y_train = np.asarray(y_train, np.float64)
    mean, std = _standardizer(x_train)
    mean, std = mean.astype(np.float64), std.astype(np.float64)
    xt = (x_train - mean) / std
    y_mean = y_train.mean(axis=0)
    u, s, vt = np.linalg.svd(xt - xt.mean(axis=0), full_matrices=False)
    uty = u.T @ (y_train - y_mean)
    x_mean = xt.mean(axis=0)

    def predict(coef: np.ndarray, x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std - x_mean) @ coef + y_mean

    best = None
    for alpha in alphas:
        coef = vt.T @ ((s / (s**2 + alpha))[:, None] * uty)
        loss = float(np.mean((predict(coef, x_val) - y_val) ** 2))
        if best is None or loss < best[0]:
            best = (loss, float(alpha), coef)
    loss, alpha, coef = best
    return BaselinePredictions(
        val=predict(coef, x_val),
        test=predict(coef, x_test),
        chosen={"alpha": alpha, "val_mse": loss},
    )


def fit_mean(y_train: np.ndarray, n_val: int, n_test: int) -> BaselinePredictions:
    """The constant training mean of every target (z-scored CPs: ~0 on the full training split)."""
    mean = np.asarray(y_train, np.float64).mean(axis=0)
    return BaselinePredictions(
        val=np.tile(mean, (n_val, 1)),
        test=np.tile(mean, (n_test, 1)),
        chosen={"mean": mean.tolist()},
    )


def tabular_design(table_rows, stats: NormalizationStats) -> np.ndarray:
    """Tabular record as a plain matrix: z-scored numbers (missing -> 0), missing flags, one-hot
    categories with a missing flag each."""
    num, num_missing, cat, cat_missing = encode_tabular(table_rows, stats)
    columns = [num, num_missing.astype(np.float32)]
    for j, levels in enumerate(stats.categorical.values()):
        onehot = np.eye(len(levels), dtype=np.float32)[cat[:, j]]
        onehot[cat_missing[:, j]] = 0.0
        columns += [onehot, cat_missing[:, j : j + 1].astype(np.float32)]
    return np.concatenate(columns, axis=1)


@dataclass
class BaselineData:
    """One modality's inputs and z-scored targets for every split, read from the cohort once, so
    that the fits of every fraction and seed share one read (and one ECG drift filter).

    ECGs have their baseline drift removed (0.67 Hz high-pass, as the ECG encoder's input);
    images are used as stored; the tabular record is `tabular_design`'s plain matrix.
    """

    cohort: Cohort
    modality: str
    stats: NormalizationStats
    inputs: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]

    @classmethod
    def load(cls, cohort: Cohort, modality: str, tabular_variant: str = "T") -> BaselineData:
        if modality != "tabular" and modality not in cohort.modalities:
            raise ValueError(
                f"{cohort.path}: no modality {modality!r} (it has {cohort.modalities})"
            )
        stats = NormalizationStats.fit(cohort, tabular_variant)
        table = cohort.table
        split = table["split"].to_numpy()
        inputs, targets = {}, {}
        for name in SPLIT_NAMES:
            index = np.flatnonzero(split == name)
            targets[name] = stats.normalize_targets(
                table[CP_NAMES].to_numpy(np.float64)[index]
            ).astype(np.float32)
            if modality == "tabular":
                inputs[name] = tabular_design(table.iloc[index], stats)
            else:
                x = np.asarray(cohort.array(modality)[index], np.float32)
                if modality == "ecg":
                    x = remove_baseline_drift(x, cohort.ecg_sampling_rate_hz).astype(np.float32)
                inputs[name] = x
        return cls(cohort, modality, stats, inputs, targets)

    def splits(
        self, fraction: float | None = None, fraction_seed: int = 0
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{split: (inputs, z-scored targets)}, the training split optionally cut to a nested
        `fraction` (the same subsets as the transformer rows)."""
        out = {name: (self.inputs[name], self.targets[name]) for name in SPLIT_NAMES}
        if fraction is not None and float(fraction) != 1.0:
            table = self.cohort.table
            train_ids = np.flatnonzero(table["split"].to_numpy() == "train")
            keep = nested_fractions(table, [fraction], fraction_seed)[float(fraction)]
            # positions of the kept subjects within the training split's rows
            within = np.searchsorted(train_ids, np.sort(keep))
            out["train"] = (self.inputs["train"][within], self.targets["train"][within])
        return out


def baseline_inputs(
    cohort: Cohort,
    modality: str,
    fraction: float | None = None,
    fraction_seed: int = 0,
    tabular_variant: str = "T",
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (inputs, z-scored targets)} of one modality (see `BaselineData`)."""
    return BaselineData.load(cohort, modality, tabular_variant).splits(fraction, fraction_seed)


def run_baseline(
    data: BaselineData | Cohort,
    modality: str,
    kind: str,
    seed: int = 0,
    fraction: float | None = None,
    epochs: int = 30,
    image_cnn: dict | None = None,
    **train_options,
) -> BaselinePredictions:
    """One reference baseline: `kind` is "cnn", "ridge" or "mean". `data` is the modality's
    `BaselineData` (read once for many fits) or a cohort to read it from. `image_cnn`: the
    `ImageCNN` architecture of an image CNN (e.g. `STANDARD_IMAGE_CNN`; None: the cheap one)."""
    if not isinstance(data, BaselineData):
        data = BaselineData.load(data, modality)
    elif data.modality != modality:
        raise ValueError(f"the baseline data hold {data.modality!r}, not {modality!r}")
    split = data.splits(fraction, fraction_seed=seed)
    (xt, yt), (xv, yv), (xs, _) = split["train"], split["val"], split["test"]
    if kind == "mean":
        return fit_mean(yt, len(yv), len(xs))
    if kind == "ridge":
        return fit_ridge(
            xt.reshape(len(xt), -1), yt, xv.reshape(len(xv), -1), yv, xs.reshape(len(xs), -1)
        )
    if kind != "cnn":
        raise ValueError(f"unknown baseline kind {kind!r}; expected 'cnn', 'ridge' or 'mean'")
    if modality == "ecg":
        model: nn.Module = ECGCNN(in_channels=xt.shape[1])
    elif modality in ("localizer", "cmr"):
        model = ImageCNN(in_channels=xt.shape[1], **(image_cnn or {}))
    else:
        raise ValueError(f"no CNN baseline for {modality!r}; use 'ridge' for tabular")
    return fit_network(model, xt, yt, xv, yv, xs, epochs=epochs, seed=seed, **train_options)


# What each modality's reference baseline is, and how the book names it (not from the paper).
REFERENCE_KINDS = {"localizer": "cnn", "cmr": "cnn", "ecg": "cnn", "tabular": "ridge"}
REFERENCE_LABELS = {
    "localizer": "2-D CNN (localizer)",
    "cmr": "2-D CNN (CMR)",
    "ecg": "1-D CNN (ECG)",
    "tabular": "ridge (tabular)",
    "mean": "training mean",
}


def baseline_predictions(
    data: BaselineData | Cohort,
    modality: str,
    kind: str,
    seed: int = 0,
    fraction: float | None = None,
    epochs: int = 30,
    **train_options,
) -> pd.DataFrame:
    """One reference baseline's validation and test predictions in CP units, in the format of a
    Stage III run (id, split, `<CP>_pred`, `<CP>_ref`), so the same tables and figures read them.
    `kind="mean"` is the constant mean of the (fraction of the) training split."""
    if not isinstance(data, BaselineData):
        data = BaselineData.load(data, modality)
    fit = run_baseline(data, modality, kind, seed=seed, fraction=fraction, epochs=epochs,
                       **train_options)  # fmt: skip
    table = data.cohort.table
    frames = []
    for split, z in (("val", fit.val), ("test", fit.test)):
        rows = np.flatnonzero(table["split"].to_numpy() == split)
        pred = data.stats.denormalize_targets(np.asarray(z, np.float32))
        ref = table[CP_NAMES].to_numpy(np.float64)[rows]
        frame = {"id": table["id"].to_numpy()[rows], "split": split}
        for j, cp in enumerate(CP_NAMES):
            frame[f"{cp}_pred"] = pred[:, j]
            frame[f"{cp}_ref"] = ref[:, j]
        frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)
