"""The data card of a simulated cohort: simulated versus published values, examples, ceilings.

Used by `notebooks/data_card.ipynb`; every table and figure of the chapter is built here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ctrip.data.cohort import constant_value
from ctrip.data.ecg import remove_baseline_drift
from ctrip.data.schema import CP_NAMES, CP_UNITS, LEADS

P17 = "Petersen et al. 2017, J Cardiovasc Magn Reson 19:18"
WHI = "Rautaharju et al. 2013, J Electrocardiol 46:707 (36,299 healthy women)"
SL_CMR = (
    "Carlsson et al. 2006, J Electrocardiol 39:67 (r 0.25); LARGE Heart, JCMR 2009 11:2 (r 0.28)"
)
SWISS = "Swiss conscripts, Ann Noninvasive Electrocardiol 2009, 14:227 (5-19% lower)"
UNSOURCED = "assumed (no published figure identified; see the table of assumptions)"

# (quantity, sex or "all", published mean, published SD or None, source)
PUBLISHED_MEANS: list[tuple[str, str, float, float | None, str]] = [
    ("LVEF", "female", 61, 5, P17), ("LVEF", "male", 58, 5, P17),
    ("LVSV", "female", 75, 14, P17), ("LVSV", "male", 96, 20, P17),
    ("LVMI", "female", 42, 7, P17), ("LVMI", "male", 53, 9, P17),
    ("LVEDV", "female", 124.5, 18.6, P17 + " (mid and width of the 95% range 88-161)"),
    ("LVESV", "female", 49.5, 9.4, P17 + " (95% range 31-68)"),
    ("RVEDV", "female", 125.5, 20.7, P17 + " (95% range 85-166)"),
    ("RVESV", "female", 52.0, 12.8, P17 + " (95% range 27-77)"),
    ("RVEF", "female", 57.5, 5.4, P17 + " (95% range 47-68)"),
    ("age", "all", 64, 7.5, UNSOURCED), ("height", "all", 168.5, None, UNSOURCED),
    ("weight", "all", 77.9, None, UNSOURCED), ("bmi", "all", 27.5, 4.4, UNSOURCED),
    ("sbp", "all", 138.7, None, UNSOURCED), ("dbp", "all", 82.5, None, UNSOURCED),
    ("heart_rate", "all", 71, 10, UNSOURCED),
    ("ventricular_rate", "female", 66, 9.2, WHI), ("pq_interval", "female", 158, 33.9, WHI),
    ("qrs_duration", "female", 85, 8.1, WHI), ("qtc", "female", 413, 14.2, WHI),
]  # fmt: skip

PUBLISHED_CORRELATIONS: list[tuple[str, str, float, str]] = [
    ("LVSV", "RVSV", 0.9, UNSOURCED),
    ("LVEDV", "RVEDV", 0.85, UNSOURCED),
    ("LVM", "LVEDV", 0.6, UNSOURCED),
    ("LVEF", "LVEDV", -0.2, UNSOURCED),
    ("LAVmax", "LVEDV", 0.4, UNSOURCED),
    ("sokolow_lyon", "LVMI", 0.27, SL_CMR),
]

# The physiology report: (quantity, sex or "all", statistic, published, tolerance, source).
# Statistics: "mean", "sd", "r:<other quantity>", "ratio:bmi" (Sokolow-Lyon at BMI >= 25 over
# BMI 18.5-25). Tolerances allow for the simulated cohort being the whole imaging population
# (5% abnormal hearts, BMI up to 45) where the CMR references are healthy and non-obese.
PHYSIOLOGY_CHECKS: list[tuple[str, str, str, float, float, str]] = [
    ("LVEF", "female", "mean", 61, 2, P17), ("LVEF", "male", "mean", 58, 2, P17),
    ("LVSV", "female", "mean", 75, 7, P17), ("LVSV", "male", "mean", 96, 7, P17),
    ("LVMI", "female", "mean", 42, 4, P17), ("LVMI", "male", "mean", 53, 4, P17),
    ("LVEDV", "female", "mean", 124.5, 18.6, P17 + ", 95% range 88-161"),
    ("LVESV", "female", "mean", 49.5, 9.4, P17 + ", 95% range 31-68"),
    ("RVEDV", "female", "mean", 125.5, 20.7, P17 + ", 95% range 85-166"),
    ("RVESV", "female", "mean", 52.0, 12.8, P17 + ", 95% range 27-77"),
    ("RVEF", "female", "mean", 57.5, 5.4, P17 + ", 95% range 47-68"),
    ("ventricular_rate", "female", "mean", 66, 3, WHI),
    ("pq_interval", "female", "mean", 158, 10, WHI),
    ("qrs_duration", "female", "mean", 85, 5, WHI),
    ("qtc", "female", "mean", 413, 10, WHI),
    ("sokolow_lyon", "all", "r:LVMI", 0.27, 0.1, SL_CMR),
    ("sokolow_lyon", "all", "ratio:bmi", 0.88, 0.08, SWISS),
]  # fmt: skip

# What each modality can and cannot tell, in plain words (from how the simulator makes it).
MODALITY_STATEMENT = {
    "localizer": (
        "Ventricular and atrial sizes and LV mass through one static snapshot of the chambers, "
        "body size from the outline.",
        "Ejection fractions and stroke volumes only indirectly: the heart is caught at a random "
        "phase, so a small heart in diastole and a large one in systole look alike; LVCO also "
        "needs the heart rate.",
    ),
    "cmr": (
        "LV and RV volumes, stroke volumes, ejection fractions and LV mass: the mid slice is seen "
        "at end-diastole and end-systole.",
        "Atrial volumes and function (no atrium in a mid-ventricular slice), except through their "
        "correlation with the ventricles; LVCO needs the heart rate.",
    ),
    "ecg": (
        "Heart rate (hence part of LVCO), LV mass and size weakly through QRS duration and "
        "voltage, LA size weakly through the P wave, reduced EF through the wide-QRS, flat-T pattern.",
        "Chamber volumes and EF in the normal range: voltage depends as much on BMI and electrode "
        "placement as on the heart.",
    ),
    "tabular": (
        "Body size (BSA), sex, age and blood pressure, which set the expected volumes and mass.",
        "Any individual departure from the expected heart: EF, atrial function, abnormal hearts.",
    ),
}


def _with_lvmi(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(LVMI=table["LVM"] / table["bsa"])


def reference_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """Simulated mean and SD next to each published value (by sex where published so)."""
    table = _with_lvmi(table)
    rows = []
    for quantity, sex, mean, sd, source in PUBLISHED_MEANS:
        values = table[quantity] if sex == "all" else table.loc[table["sex"] == sex, quantity]
        rows.append({
            "quantity": quantity, "sex": sex, "simulated_mean": values.mean(),
            "simulated_sd": values.std(), "published_mean": mean, "published_sd": sd,
            "missing_share": values.isna().mean(), "source": source,
        })  # fmt: skip
    return pd.DataFrame(rows)


def sokolow_lyon(ecg: np.ndarray, fs: float) -> np.ndarray:
    """Sokolow-Lyon voltage (mV): S depth in V1 plus the taller R of V5 and V6, per ECG.

    Robust extremes (0.5th and 99.5th percentiles) of the drift-free leads stand in for the
    per-beat wave amplitudes.
    """
    leads = [LEADS.index(name) for name in ("V1", "V5", "V6")]
    x = remove_baseline_drift(np.asarray(ecg[:, leads], dtype=float), fs)
    s_v1 = -np.percentile(x[:, 0], 0.5, axis=-1)
    r_v56 = np.percentile(x[:, 1:], 99.5, axis=-1).max(axis=1)
    return s_v1 + r_v56


def correlation_comparison(
    table: pd.DataFrame, ecg: np.ndarray | None = None, fs: float | None = None
) -> pd.DataFrame:
    """Simulated Pearson r next to each published correlation."""
    table = _with_lvmi(table)
    if ecg is not None:
        table = table.assign(sokolow_lyon=sokolow_lyon(ecg, fs))
    rows = []
    for a, b, r, source in PUBLISHED_CORRELATIONS:
        if a in table and b in table:
            rows.append(
                {
                    "pair": f"{a} ~ {b}",
                    "simulated_r": table[a].corr(table[b]),
                    "published_r": r,
                    "source": source,
                }
            )
    return pd.DataFrame(rows)


def physiology_report(
    table: pd.DataFrame, ecg: np.ndarray | None = None, fs: float | None = None
) -> pd.DataFrame:
    """Each published figure of `PHYSIOLOGY_CHECKS` beside its simulated value and a pass mark.

    ECG rows are measured on the simulated signals (`ecg`, sampled at `fs`): the table's
    device-like intervals and the Sokolow-Lyon voltage; without `ecg` those rows are skipped.
    """
    table = _with_lvmi(table)
    if ecg is not None:
        table = table.assign(sokolow_lyon=sokolow_lyon(ecg, fs))
    rows = []
    for quantity, sex, statistic, published, tolerance, source in PHYSIOLOGY_CHECKS:
        if quantity not in table:
            continue
        part = table if sex == "all" else table[table["sex"] == sex]
        values = part[quantity]
        if statistic == "mean":
            simulated = values.mean()
        elif statistic == "sd":
            simulated = values.std()
        elif statistic.startswith("r:"):
            simulated = values.corr(part[statistic[2:]])
        elif statistic == "ratio:bmi":
            overweight = values[part["bmi"] >= 25].mean()
            simulated = overweight / values[part["bmi"].between(18.5, 25, inclusive="left")].mean()
        else:
            raise ValueError(f"unknown statistic {statistic!r} for {quantity}")
        rows.append({
            "quantity": quantity, "sex": sex, "statistic": statistic, "published": published,
            "simulated": float(simulated), "tolerance": tolerance,
            "within": bool(abs(simulated - published) <= tolerance), "source": source,
        })  # fmt: skip
    return pd.DataFrame(rows)


def modality_statement() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"modality": m, "can tell": can, "cannot tell": cannot}
            for m, (can, cannot) in MODALITY_STATEMENT.items()
        ]
    )


def example_subjects(table: pd.DataFrame) -> dict[str, int]:
    """Rows of a small and a large heart (5th and 95th LVEDV percentiles among normal EF)."""
    normal = table.index[table["LVEF"].between(50, 70)]
    edv = table.loc[normal, "LVEDV"]
    pick = lambda q: int((edv - edv.quantile(q)).abs().idxmin())  # noqa: E731
    return {"small heart": pick(0.05), "large heart": pick(0.95)}


def plot_examples(cohort, path: str | Path | None = None):
    """Localizer slices, cine frames and three ECG leads of a small and a large heart."""
    import matplotlib.pyplot as plt

    rows = example_subjects(cohort.table)
    fs = cohort.ecg_sampling_rate_hz
    fig, axes = plt.subplots(
        len(rows), 7, figsize=(20, 3.2 * len(rows)), gridspec_kw={"width_ratios": [1] * 6 + [3]}
    )
    for line, (label, row) in enumerate(rows.items()):
        subject = cohort.table.iloc[row]
        for s in range(3):
            axes[line, s].imshow(cohort.array("localizer")[row, s], cmap="gray", vmin=0, vmax=1)
            axes[line, s].set_title(f"localizer slice {s + 1}", fontsize=9)
        for f, frame in enumerate(("ED", "ES", "mid")):
            axes[line, 3 + f].imshow(cohort.array("cmr")[row, f], cmap="gray", vmin=0, vmax=1)
            axes[line, 3 + f].set_title(f"cine {frame}", fontsize=9)
        for a in axes[line, :6]:
            a.set_xticks([])
            a.set_yticks([])
        axes[line, 0].set_ylabel(
            f"{label}\nLVEDV {subject['LVEDV']:.0f} mL\nLVM {subject['LVM']:.0f} g\nLVEF {subject['LVEF']:.0f}%",
            fontsize=9,
        )
        ecg = np.asarray(cohort.array("ecg")[row])
        t = np.arange(ecg.shape[-1]) / fs
        keep = t < 4.0
        for k, lead in enumerate(("II", "V1", "V5")):
            axes[line, 6].plot(t[keep], ecg[LEADS.index(lead), keep] - 2.0 * k, lw=0.8, label=lead)
        axes[line, 6].set_title("ECG (raw, first 4 s; offsets 2 mV)", fontsize=9)
        axes[line, 6].set_xlabel("s")
        axes[line, 6].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def histogram_edges(values: np.ndarray, bins: int = 40) -> tuple[np.ndarray, float | None]:
    """Shared bin edges for a column's histograms, and its value when it is constant.

    A column whose values agree to within float rounding (e.g. an extract that filled a field
    with one value, then recomputed it) has no range to cut into `bins` finite bins; it gets one
    bin of width 1 around that value instead."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.linspace(0.0, 1.0, bins + 1), None
    constant = constant_value(finite)
    if constant is not None:
        return np.array([constant - 0.5, constant + 0.5]), constant
    return np.linspace(float(finite.min()), float(finite.max()), bins + 1), None


def plot_marginals(table: pd.DataFrame, path: str | Path | None = None):
    """Histograms of the 18 CPs by sex."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 6, figsize=(18, 8))
    for ax, cp in zip(axes.ravel(), CP_NAMES):
        values = pd.to_numeric(table[cp], errors="coerce")
        edges, constant = histogram_edges(values.to_numpy(dtype=float))
        for sex, colour in (("female", "tab:red"), ("male", "tab:blue")):
            part = values[(table["sex"] == sex).to_numpy()].dropna()
            ax.hist(part, bins=edges, alpha=0.5, color=colour, label=sex)
        title = f"{cp} [{CP_UNITS[cp]}]"
        ax.set_title(title + (f": every subject {constant:g}" if constant is not None else ""),
                     fontsize=9)  # fmt: skip
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def plot_cp_correlations(table: pd.DataFrame, path: str | Path | None = None):
    """Pearson correlation matrix of the 18 CPs."""
    import matplotlib.pyplot as plt

    corr = table[CP_NAMES].corr().to_numpy()
    fig, ax = plt.subplots(figsize=(8, 7))
    im = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(CP_NAMES)), CP_NAMES, rotation=90, fontsize=8)
    ax.set_yticks(range(len(CP_NAMES)), CP_NAMES, fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8, label="Pearson r")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
