"""Oracle ceilings: the best r any model of a modality can reach on the simulated cohort.

A modality's data are made from a few generating quantities plus noise that is independent of
the subject. The ceiling of a modality for a CP is the Pearson r that a flexible regressor
reaches from *every* generating quantity that reaches that modality's input (a superset of what
the data show: a model of the data cannot know more), fitted on a large reference sample of
simulated subjects disjoint from the cohort and evaluated on the cohort's test subjects. The
regressor is, per CP, the better on held-out reference subjects of a degree-2 polynomial
ridge and a three-layer perceptron (`neural`; without it, the ridge alone: a looser estimate
that a trained network can beat). The estimate is a lower bound of the true ceiling that rises
with the reference size: for the ECG and LV mass, on the test subjects of
`benchmarks/bench_ecg_lvm.py`, r 0.83 from 16,000 reference subjects, 0.89 from 100,000 and 0.91
from 400,000. The reference and perceptron (`N_REFERENCE`, `HIDDEN`) are sized for cohorts of a
few thousand subjects; a model trained on far more subjects needs the larger reference that
`benchmarks/bench_ecg_lvm.py` fits its bound on.

What reaches each input (`modality_features`):
- localizer: every latent its renderer records (phase, chamber volumes and geometry, slice
  positions, body outline, blur, noise) and the population quantities it reads (heart
  orientation and position, LV shape, body shape, BMI);
- cmr: every latent of the cine renderer (areas, wall thickness, long axis, position, noise)
  and the LV shape it reads;
- ecg: `ecg_model.SIGNAL_COLUMNS` (timing and every wave's amplitude on every lead, the only
  subject quantities the signal is rendered from) and the noise levels;
- tabular: the complete covariates (before missingness) and everything of the ECG, since the
  record holds ECG-measured intervals and the ECG rate.
A trained method whose r exceeds its modality's ceiling beyond its CI contradicts this bound;
`above_ceiling` flags it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.preprocessing import PolynomialFeatures

from ctrip.data.schema import CP_NAMES
from ctrip.data.synth.ecg_model import NOISE_COLUMNS, SIGNAL_COLUMNS

# Population quantities the localizer renderer reads besides the CPs: heart orientation,
# position and shape, body shape and (for the body outline and fat) BMI.
LOCALIZER_POPULATION = (
    "lat_heart_azimuth", "lat_heart_elevation", "lat_heart_dx", "lat_heart_dy", "lat_lv_aspect",
    "lat_body_shape", "tab_bmi",
)  # fmt: skip
ECG_FEATURES = (*SIGNAL_COLUMNS, *NOISE_COLUMNS)
# What reaches each modality's input, as latent column names or prefixes (ending in "_").
ORACLE_FEATURES: dict[str, tuple[str, ...]] = {
    "localizer": ("loc_", *LOCALIZER_POPULATION),
    "cmr": ("cmr_", "lat_lv_aspect"),
    "ecg": ECG_FEATURES,
    "tabular": ("tab_", *ECG_FEATURES),
}
# Reference subjects (at most), the perceptron's hidden widths and epochs. Measured with
# `benchmarks/bench_oracle_ceiling.py` on the 3,400-subject default cohort (one thread): 256-256-256
# for 60 epochs gives the ECG's LV mass ceiling r 0.81 (128-128-128: 0.80; the former two-layer
# scikit-learn perceptron: 0.77), fewer reference subjects lower it (12,000: by ~0.04).
N_REFERENCE = 20000
HIDDEN = (256, 256, 256)
EPOCHS = 60
RIDGE_ALPHAS = np.logspace(-2, 4, 13)


def reference_size(n_cohort: int) -> int:
    """Reference subjects for a cohort of `n_cohort`: ten times it, 2,000 to `N_REFERENCE`."""
    return int(min(N_REFERENCE, max(2000, 10 * n_cohort)))


def _matches(column: str, key: str) -> bool:
    return column == key or (key.endswith("_") and column.startswith(key))


def oracle_columns(columns, modality: str) -> list[str]:
    """The latent columns (of `columns`) that reach `modality`'s input."""
    keys = ORACLE_FEATURES[modality]
    return [c for c in columns if any(_matches(c, k) for k in keys)]


def oracle_features(latents: pd.DataFrame, modality: str) -> pd.DataFrame:
    """Numeric feature matrix of `modality` from a latents table (categoricals one-hot)."""
    columns = oracle_columns(latents.columns, modality)
    if not columns:
        raise ValueError(
            f"the latents table holds no {modality} columns ({ORACLE_FEATURES[modality]})"
        )
    frame = latents[columns].copy()
    for c in frame.columns:
        if frame[c].dtype == bool:
            frame[c] = frame[c].astype(float)
    return pd.get_dummies(frame, drop_first=True, dtype=float).astype(float)


def fit_perceptron(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_hold: np.ndarray,
    y_hold: np.ndarray,
    x_out: np.ndarray,
    seed: int = 0,
    hidden: tuple[int, ...] = HIDDEN,
    epochs: int = EPOCHS,
    batch_size: int = 512,
    lr: float = 2e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """A GELU perceptron from standardized `x` to standardized `y` (AdamW, one-cycle, MSE), the
    weights of the epoch with the lowest error on the held rows kept; returns its predictions
    of the held and the `x_out` rows (in `y`'s units)."""
    import torch

    mean, sd = x_fit.mean(axis=0), x_fit.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    x, xh, xo = (tensor((a - mean) / sd) for a in (x_fit, x_hold, x_out))
    y, yh = tensor(y_fit), tensor(y_hold)
    generator = torch.Generator().manual_seed(seed)
    layers, width = [], x.shape[1]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for h in hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.GELU()]
            width = h
        net = torch.nn.Sequential(*layers, torch.nn.Linear(width, y.shape[1]))
    steps = max(1, len(x) // batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4, fused=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps)
    best_error, best_state = np.inf, None
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=generator)
        for k in range(steps):
            rows = order[k * batch_size : (k + 1) * batch_size]
            loss = ((net(x[rows]) - y[rows]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        net.eval()
        with torch.no_grad():
            error = float(((net(xh) - yh) ** 2).mean())
        if error < best_error:
            best_error = error
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    with torch.no_grad():
        return net(xh).numpy(), net(xo).numpy()


def polynomial_ridge(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_hold: np.ndarray,
    y_hold: np.ndarray,
    x_out: np.ndarray,
    alphas: np.ndarray = RIDGE_ALPHAS,
    chunk: int = 20000,
) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression on the degree-2 polynomial of the standardized inputs, its penalty
    chosen per target among `alphas` on the held rows; returns its predictions of the held and
    the `x_out` rows. One eigendecomposition of the Gram matrix serves every penalty (ten times
    faster than a cross-validated ridge per target on a 20,000-subject reference), and the
    polynomial is expanded `chunk` rows at a time, so a reference of any size fits in memory."""
    mean, sd = x_fit.mean(axis=0), x_fit.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    square = PolynomialFeatures(2, include_bias=False).fit(x_fit[:1])

    def expand(x: np.ndarray) -> np.ndarray:
        return square.transform((x - mean) / sd)

    def chunks(x: np.ndarray):
        for start in range(0, len(x), chunk):
            yield slice(start, start + chunk), expand(x[start : start + chunk])

    width, y_mean = square.n_output_features_, y_fit.mean(axis=0)
    total, gram, cross = (
        np.zeros(width),
        np.zeros((width, width)),
        np.zeros((width, y_fit.shape[1])),
    )
    for rows, part in chunks(x_fit):
        total += part.sum(axis=0)
        gram += part.T @ part
        cross += part.T @ (y_fit[rows] - y_mean)
    centre = total / len(x_fit)
    gram -= len(x_fit) * np.outer(centre, centre)  # the Gram matrix of the centred polynomial
    scale = np.sqrt(np.clip(np.diag(gram) / len(x_fit), 0.0, None))
    scale = np.where(scale > 0, scale, 1.0)
    gram, cross = gram / np.outer(scale, scale), cross / scale[:, None]
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    along = eigenvectors.T @ cross  # (features, targets)
    rotate = eigenvectors / scale[:, None]

    def basis(x: np.ndarray) -> np.ndarray:
        out = np.empty((len(x), width))
        for rows, part in chunks(x):
            out[rows] = (part - centre) @ rotate
        return out

    hold_basis, out_basis = basis(x_hold), basis(x_out)
    best_error = np.full(y_fit.shape[1], np.inf)
    held = np.zeros((len(x_hold), y_fit.shape[1]))
    out = np.zeros((len(x_out), y_fit.shape[1]))
    for alpha in alphas:
        coef = along / (np.clip(eigenvalues, 0.0, None) + alpha)[:, None]
        pred_hold = hold_basis @ coef + y_mean
        error = ((pred_hold - y_hold) ** 2).mean(axis=0)
        better = error < best_error
        best_error[better] = error[better]
        held[:, better] = pred_hold[:, better]
        out[:, better] = out_basis @ coef[:, better] + y_mean[better]
    return held, out


def ceiling_from_features(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    seed: int = 0,
    neural: bool = True,
    hidden: tuple[int, ...] = HIDDEN,
    epochs: int = EPOCHS,
) -> np.ndarray:
    """Test predictions of every target column: a degree-2 polynomial ridge and (if `neural`)
    a perceptron (`fit_perceptron`) on the standardized inputs, both fitted on four fifths of
    the training rows; per target the one with the lower error on the held-out fifth (which
    also early-stops the perceptron).

    The perceptron matters where a target hides in ratios of the inputs (an ECG amplitude
    relative to the subject's own gain), which a quadratic cannot express."""
    x_train, x_test = np.asarray(x_train, float), np.asarray(x_test, float)
    y_train = np.asarray(y_train, float)
    if y_train.ndim == 1:
        y_train = y_train[:, None]
    mean, sd = y_train.mean(axis=0), y_train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    y = (y_train - mean) / sd
    hold = np.random.default_rng(seed).random(len(x_train)) < 0.2

    held, out = polynomial_ridge(x_train[~hold], y[~hold], x_train[hold], y[hold], x_test)
    best_error = ((held - y[hold]) ** 2).mean(axis=0)
    if neural:
        held, pred = fit_perceptron(
            x_train[~hold], y[~hold], x_train[hold], y[hold], x_test, seed, hidden, epochs
        )
        better = ((held - y[hold]) ** 2).mean(axis=0) < best_error
        out[:, better] = pred[:, better]
    return out * sd + mean


def reference_latents(cohort, n_reference: int) -> pd.DataFrame:
    """Latents of `n_reference` simulated subjects beyond the cohort's own (same recipe)."""
    from ctrip.data.synth.generate import reference_subjects

    recipe = cohort.manifest.get("recipe") or {}
    if recipe.get("generator") != "ctrip.data.synth":
        raise ValueError(f"{cohort.path}: not a simulated cohort, it has no oracle ceiling")
    return reference_subjects(
        int(recipe["seed"]), range(cohort.n, cohort.n + n_reference), recipe["sizes"]
    )


def oracle_ceiling(
    cohort,
    seed: int = 0,
    modalities: tuple[str, ...] | None = None,
    n_reference: int | None = None,
    neural: bool = True,
    hidden: tuple[int, ...] = HIDDEN,
    epochs: int = EPOCHS,
) -> pd.DataFrame:
    """Per modality and CP: the ceiling's Pearson r, mean difference and 95% limits of agreement
    on the cohort's test split.

    Difference = prediction - reference (Bland-Altman), LoA = MD +- 1.96 SD (ddof 1).
    `cohort` is an opened simulated `ctrip.data.cohort.Cohort` with the `latents` extra;
    `n_reference` defaults to `reference_size(cohort.n)`.
    """
    latents = cohort.extra("latents").set_index("id").loc[cohort.table["id"]].reset_index()
    test = cohort.table["split"].astype(str).to_numpy() == "test"
    if test.sum() < 3:
        raise ValueError(f"{cohort.path}: the oracle needs at least 3 test subjects")
    reference = reference_latents(cohort, n_reference or reference_size(cohort.n))
    targets = cohort.table[CP_NAMES].to_numpy(dtype=float)
    available = [m for m in ORACLE_FEATURES if m == "tabular" or m in cohort.modalities]
    rows = []
    for modality in modalities or available:
        x_ref = oracle_features(reference, modality)
        x_test = oracle_features(latents[test], modality).reindex(
            columns=x_ref.columns, fill_value=0.0
        )
        pred = ceiling_from_features(
            x_ref.to_numpy(),
            reference[CP_NAMES].to_numpy(float),
            x_test.to_numpy(),
            seed,
            neural,
            hidden,
            epochs,
        )
        for j, cp in enumerate(CP_NAMES):
            diff = pred[:, j] - targets[test, j]
            md, sd = float(diff.mean()), float(diff.std(ddof=1))
            rows.append({
                "modality": modality, "cp": cp,
                "pearson_r": float(np.corrcoef(pred[:, j], targets[test, j])[0, 1]),
                "md": md, "loa_low": md - 1.96 * sd, "loa_high": md + 1.96 * sd,
            })  # fmt: skip
    return pd.DataFrame(rows)


def shared_dimensions(cohort, pairs: list[tuple[str, str]], seed: int = 0) -> pd.DataFrame:
    """For each modality pair (a, b): how many effective dimensions what reaches a's input
    shares with what reaches b's (`ctrip.analysis.alignment.shared_dimensionality` of their
    `oracle_features` over all of the cohort's subjects): the dimensionality a Stage II
    embedding could use if it carried everything the pair shares, with the data's noise
    left out. Rows a, b, n, participation_ratio, rho_1, rho_2, rho_3 (the largest
    held-out canonical correlations)."""
    from ctrip.analysis.alignment import shared_dimensionality

    latents = cohort.extra("latents")
    rows = []
    for a, b in pairs:
        result = shared_dimensionality(
            oracle_features(latents, a).to_numpy(float),
            oracle_features(latents, b).to_numpy(float),
            seed,
        )
        top = (result["correlations"] + [float("nan")] * 3)[:3]
        rows.append({"a": a, "b": b, "n": result["n"],
                     "participation_ratio": result["participation_ratio"],
                     **{f"rho_{k + 1}": v for k, v in enumerate(top)}})  # fmt: skip
    return pd.DataFrame(rows)


def above_ceiling(results: pd.DataFrame, ceiling: pd.DataFrame) -> pd.DataFrame:
    """`results` (method, cp, r_ci_low, ...) with the modality ceiling's r beside each row and
    `above_ceiling` True where the whole CI of the method's r lies above it, which a correct
    ceiling makes impossible up to chance: such a row must be printed flagged, never silently.

    `ceiling` is `ctrip.pipeline.report.oracle_for_methods` output (method, cp, pearson_r).
    """
    missing = {"method", "cp", "r_ci_low"} - set(results.columns)
    if missing:
        raise ValueError(f"results lack the columns {sorted(missing)}")
    bound = ceiling[["method", "cp", "pearson_r"]].rename(columns={"pearson_r": "ceiling_r"})
    out = results.merge(bound, on=["method", "cp"], how="left")
    out["above_ceiling"] = out["r_ci_low"] > out["ceiling_r"]
    return out
