"""Opportunistic screening from predicted phenotypes: calibrated intervals and screening flags.

Two questions a user of a localizer-based estimate asks:
1. How sure is each predicted phenotype? Split-conformal prediction intervals per CP, calibrated
   on held-out (validation) predictions; their empirical coverage on the test split with a
   Wilson CI says whether the promised level holds.
2. How well does the estimate flag the hearts that need a proper look? Flags at published
   thresholds (reduced LVEF, LV hypertrophy, RV dilation) scored by AUROC, sensitivity and
   specificity at the threshold, with percentile bootstrap CIs over subjects.

Sources
- Split conformal prediction: Vovk, Gammerman & Shafer 2005 (Algorithmic Learning in a Random
  World); Lei et al. 2018, JASA 113:1094 (finite-sample quantile ceil((n+1)(1-alpha))/n).
- Wilson score interval: Wilson 1927, JASA 22:209.
- AUROC as the Mann-Whitney statistic: Hanley & McNeil 1982, Radiology 143:29.
- BSA: Mosteller 1987, NEJM 317:1098.
- Thresholds: see `SCREENING_FLAGS`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from ctrip.analysis import tables
from ctrip.analysis.metrics import split_rows
from ctrip.data.schema import CP_NAMES, CP_UNITS, SEXES

CONFORMAL_METHODS = ("absolute", "signed")

# ------------------------------------------------------------------- conformal intervals


def conformal_quantile(scores: Any, level: float) -> float:
    """The split-conformal quantile of calibration `scores` for coverage `level` = 1 - alpha:
    the k-th smallest score with k = ceil((n + 1) level), i.e. the empirical quantile at
    ceil((n + 1)(1 - alpha)) / n. Infinite when k > n (too few calibration subjects for the
    level): the only interval with the guarantee is then the whole line."""
    scores = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if not 0.0 < level < 1.0:
        raise ValueError(f"the coverage level must lie in (0, 1), got {level}")
    if scores.size == 0:
        raise ValueError("no calibration scores")
    if not np.isfinite(scores).all():
        raise ValueError("calibration scores hold NaN or inf")
    n = scores.size
    # a small tolerance keeps (n + 1) * level from rounding up past an exact integer
    k = math.ceil((n + 1) * level - 1e-9)
    return float("inf") if k > n else float(scores[k - 1])


@dataclass
class ConformalIntervals:
    """Split-conformal prediction intervals per CP, fitted on calibration predictions.

    method "absolute": score |reference - prediction|, interval prediction -+ q (symmetric).
    method "signed": scores reference - prediction, lower and upper offsets from the alpha/2
    and 1 - alpha/2 conformal quantiles (an asymmetric interval that absorbs a method's bias;
    coverage >= level by the union bound).
    offsets[cp] = (low, high): the interval of a prediction p is [p + low, p + high].
    """

    level: float
    method: str
    offsets: dict[str, tuple[float, float]]
    n_calibration: int
    calibration_split: str | None = "val"
    units: dict[str, str] = field(default_factory=dict)

    def interval(self, cp: str, prediction: Any) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds for predictions of `cp` (arrays of the input's shape)."""
        if cp not in self.offsets:
            raise KeyError(
                f"no conformal interval was fitted for {cp!r}; have {list(self.offsets)}"
            )
        p = np.asarray(prediction, dtype=np.float64)
        low, high = self.offsets[cp]
        return p + low, p + high

    def apply(self, predictions: pd.DataFrame) -> pd.DataFrame:
        """A copy of `predictions` with "<CP>_low" and "<CP>_high" columns beside each fitted
        "<CP>_pred" column."""
        missing = [f"{cp}_pred" for cp in self.offsets if f"{cp}_pred" not in predictions]
        if missing:
            raise ValueError(f"the predictions frame lacks columns {missing}")
        out = predictions.copy()
        for cp in self.offsets:
            out[f"{cp}_low"], out[f"{cp}_high"] = self.interval(cp, out[f"{cp}_pred"].to_numpy())
        return out

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (floats, strings, lists) for a checkpoint or JSON; inf stays a float."""
        d = asdict(self)
        d["offsets"] = {cp: [float(lo), float(hi)] for cp, (lo, hi) in self.offsets.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConformalIntervals:
        """Inverse of `to_dict`."""
        missing = {"level", "method", "offsets", "n_calibration"} - set(d)
        if missing:
            raise ValueError(f"a conformal-interval dict lacks keys {sorted(missing)}")
        if d["method"] not in CONFORMAL_METHODS:
            raise ValueError(f"unknown conformal method {d['method']!r}")
        return cls(
            level=float(d["level"]),
            method=str(d["method"]),
            offsets={cp: (float(v[0]), float(v[1])) for cp, v in d["offsets"].items()},
            n_calibration=int(d["n_calibration"]),
            calibration_split=d.get("calibration_split"),
            units=dict(d.get("units", {})),
        )


def _columns(predictions: pd.DataFrame, cps: Iterable[str], kinds: Sequence[str]) -> None:
    missing = [f"{cp}_{k}" for cp in cps for k in kinds if f"{cp}_{k}" not in predictions]
    if missing:
        raise ValueError(f"the predictions frame lacks columns {missing}")


def fit_conformal(
    predictions: pd.DataFrame,
    level: float = 0.90,
    cps: Sequence[str] = tuple(CP_NAMES),
    split: str | None = "val",
    method: str = "absolute",
) -> ConformalIntervals:
    """Fit split-conformal intervals from calibration predictions ("<CP>_pred", "<CP>_ref"
    columns, e.g. `Stage3Result.predictions`; rows of `split` only, all rows if None)."""
    if method not in CONFORMAL_METHODS:
        raise ValueError(
            f"unknown conformal method {method!r}; expected one of {CONFORMAL_METHODS}"
        )
    rows = split_rows(predictions, split)
    _columns(rows, cps, ("pred", "ref"))
    offsets = {}
    for cp in cps:
        pred, ref = rows[f"{cp}_pred"].to_numpy(float), rows[f"{cp}_ref"].to_numpy(float)
        if not (np.isfinite(pred).all() and np.isfinite(ref).all()):
            raise ValueError(f"calibration predictions or references of {cp} hold NaN or inf")
        residual = ref - pred
        if method == "absolute":
            q = conformal_quantile(np.abs(residual), level)
            offsets[cp] = (-q, q)
        else:
            tail = (1.0 + level) / 2.0
            offsets[cp] = (
                -conformal_quantile(-residual, tail),
                conformal_quantile(residual, tail),
            )
    return ConformalIntervals(
        level=float(level),
        method=method,
        offsets=offsets,
        n_calibration=len(rows),
        calibration_split=split,
        units={cp: CP_UNITS.get(cp, "") for cp in cps},
    )


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927)."""
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} outside 0..{n}")
    z = float(st.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return max(0.0, centre - half), min(1.0, centre + half)


def coverage(low: Any, high: Any, reference: Any, confidence: float = 0.95) -> dict[str, Any]:
    """Empirical coverage of intervals [low, high] (closed) over `reference` values, with its
    Wilson CI."""
    low, high, ref = (np.asarray(a, dtype=np.float64).ravel() for a in (low, high, reference))
    if not (low.shape == high.shape == ref.shape):
        raise ValueError(
            f"low, high and reference differ in length: {low.size}, {high.size}, {ref.size}"
        )
    if np.isnan(ref).any() or np.isnan(low).any() or np.isnan(high).any():
        raise ValueError("interval bounds or references hold NaN")
    covered = int(((ref >= low) & (ref <= high)).sum())
    lo, hi = wilson_interval(covered, ref.size, confidence)
    return {
        "coverage": covered / ref.size if ref.size else float("nan"),
        "covered": covered,
        "n": int(ref.size),
        "ci_low": lo,
        "ci_high": hi,
        "mean_width": float(np.mean(high - low)) if ref.size else float("nan"),
    }


def coverage_table(
    intervals: ConformalIntervals,
    predictions: pd.DataFrame,
    split: str | None = "test",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One row per fitted CP: nominal level, n, covered, coverage with Wilson CI, mean width."""
    rows = split_rows(predictions, split)
    _columns(rows, intervals.offsets, ("pred", "ref"))
    out = []
    for cp in intervals.offsets:
        low, high = intervals.interval(cp, rows[f"{cp}_pred"].to_numpy(float))
        c = coverage(low, high, rows[f"{cp}_ref"].to_numpy(float), confidence)
        out.append({"cp": cp, "unit": CP_UNITS.get(cp, ""), "level": intervals.level,
                    "method": intervals.method, **c})  # fmt: skip
    return pd.DataFrame(out)


# ------------------------------------------------------------------- screening flags


def body_surface_area(height_cm: Any, weight_kg: Any) -> np.ndarray:
    """Body surface area in m2 by Mosteller's formula, sqrt(height [cm] * weight [kg] / 3600)."""
    h, w = np.asarray(height_cm, dtype=np.float64), np.asarray(weight_kg, dtype=np.float64)
    if (h <= 0).any() or (w <= 0).any():
        raise ValueError("height and weight must be positive (cm, kg)")
    return np.sqrt(h * w / 3600.0)


@dataclass(frozen=True)
class ScreeningFlag:
    """An abnormality flag from one CP at a published threshold.

    direction "below": abnormal when value < limit; "above": abnormal when value > limit.
    indexed: the CP is divided by BSA (m2) before comparison. limits: per sex (SEXES).
    verified: whether the limit was checked against the cited source when it was written here.
    """

    name: str
    label: str
    cp: str
    direction: str
    limits: Mapping[str, float]
    indexed: bool
    unit: str
    source: str
    verified: bool
    note: str = ""

    def __post_init__(self) -> None:
        if self.direction not in ("below", "above"):
            raise ValueError(f"flag {self.name}: direction must be 'below' or 'above'")
        if set(self.limits) != set(SEXES):
            raise ValueError(f"flag {self.name}: limits must be given for {SEXES}")


P17 = (
    "Petersen SE et al. Reference ranges for cardiac structure and function using cardiovascular "
    "magnetic resonance (CMR) in Caucasians from the UK Biobank population cohort. "
    "J Cardiovasc Magn Reson 2017;19:18"
)
ESC_HF_2021 = (
    "McDonagh TA et al. 2021 ESC Guidelines for the diagnosis and treatment of acute and chronic "
    "heart failure. Eur Heart J 2021;42:3599-3726"
)
# P17's abstract gives LV mass index (LVM / BSA) as mean +- SD, men 53 +- 9, women 42 +- 7 g/m2;
# its reference ranges are mean +- 1.96 SD (the women's 95% ranges of its Table 3, e.g. LVEF
# 51-70 % around 61 +- 5 %, agree). The upper limit is recomputed from the abstract's rounded
# mean and SD, so it may differ from the paper's table by about 1 g/m2.
LVMI_ULN = {"female": 42 + 1.959963984540054 * 7, "male": 53 + 1.959963984540054 * 9}
# RVEDV index (RVEDV / BSA): P17's indexed RV limits (its Table 4) could NOT be retrieved and
# verified in this session. The limits below are ASSUMED, derived from what was verifiable:
# the women's absolute RVEDV 95% range of P17 (85-166 mL) over a typical healthy women's BSA of
# 1.75 m2 (ASSUMED); for men, that limit scaled by the men-to-women ratio of LVEDV from P17's
# means (men LVSV 96 mL at LVEF 58% = 165.5 mL; women's range mid 124.5 mL), ASSUMED to hold
# for the RV, over 2.0 m2 (ASSUMED). Replace them with P17 Table 4 before citing them.
_RVEDV_ULN_WOMEN_ML = 166.0
_LVEDV_MEN_TO_WOMEN = (96.0 / 0.58) / 124.5
RVEDVI_ULN = {
    "female": _RVEDV_ULN_WOMEN_ML / 1.75,
    "male": _RVEDV_ULN_WOMEN_ML * _LVEDV_MEN_TO_WOMEN / 2.0,
}

SCREENING_FLAGS: tuple[ScreeningFlag, ...] = (
    ScreeningFlag(
        name="reduced_lvef",
        label="LVEF < 50%",
        cp="LVEF",
        direction="below",
        limits={"female": 50.0, "male": 50.0},
        indexed=False,
        unit="%",
        source=ESC_HF_2021,
        verified=True,
        note="LVEF below 50% is mildly reduced (41-49%) or reduced (<= 40%) in the guideline's "
        "classification of heart failure.",
    ),
    ScreeningFlag(
        name="lv_hypertrophy",
        label="LV mass index > ULN",
        cp="LVM",
        direction="above",
        limits=LVMI_ULN,
        indexed=True,
        unit="g/m2",
        source=P17,
        verified=True,
        note="Upper limit = mean + 1.96 SD of the healthy UK Biobank reference (men 53 +- 9, "
        "women 42 +- 7 g/m2, P17 abstract).",
    ),
    ScreeningFlag(
        name="rv_dilation",
        label="RVEDV index > ULN",
        cp="RVEDV",
        direction="above",
        limits=RVEDVI_ULN,
        indexed=True,
        unit="mL/m2",
        source=P17,
        verified=False,
        note="Limits ASSUMED (derived from P17's absolute women's range), NOT verified "
        "against P17 Table 4; check before citing.",
    ),
)


def flag_by_name(name: str) -> ScreeningFlag:
    for flag in SCREENING_FLAGS:
        if flag.name == name:
            return flag
    raise KeyError(f"no screening flag {name!r}; have {[f.name for f in SCREENING_FLAGS]}")


def _sex_limits(flag: ScreeningFlag, sex: Any) -> np.ndarray:
    sex = np.asarray(sex, dtype=object).ravel()
    unknown = sorted({str(s) for s in sex} - set(SEXES))
    if unknown:
        raise ValueError(f"flag {flag.name}: unknown sex values {unknown}; expected {SEXES}")
    return np.array([flag.limits[s] for s in sex], dtype=np.float64)


def screening_score(
    flag: ScreeningFlag, values: Any, sex: Any, bsa: Any | None = None
) -> np.ndarray:
    """How far each subject lies beyond the flag's sex-specific limit, in the flag's unit
    (indexed if the flag is): positive = abnormal side. One score for both sexes, so a single
    ROC curve covers the cohort and the threshold sits at 0."""
    v = np.asarray(values, dtype=np.float64).ravel()
    limits = _sex_limits(flag, sex)
    if limits.size != v.size:
        raise ValueError(f"flag {flag.name}: {v.size} values but {limits.size} sexes")
    if flag.indexed:
        if bsa is None:
            raise ValueError(f"flag {flag.name} is indexed to BSA; give bsa")
        b = np.asarray(bsa, dtype=np.float64).ravel()
        if b.size != v.size or (b <= 0).any() or not np.isfinite(b).all():
            raise ValueError(f"flag {flag.name}: bsa must be positive and one per subject")
        v = v / b
    return v - limits if flag.direction == "above" else limits - v


def screening_labels(
    flag: ScreeningFlag, values: Any, sex: Any, bsa: Any | None = None
) -> np.ndarray:
    """True where the subject is abnormal by the flag (strictly beyond the limit)."""
    return screening_score(flag, values, sex, bsa) > 0


# ------------------------------------------------------------------- discrimination


def _binary(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if not np.isin(y, (0, 1, True, False)).all():
        raise ValueError("labels must be 0/1 or boolean")
    if not np.isfinite(s).all():
        raise ValueError("scores hold NaN or inf")
    return y.astype(bool), s


def roc_auc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic: the probability that a random
    positive scores above a random negative, ties counting one half. NaN without both classes."""
    y, s = _binary(labels, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = st.rankdata(s)  # average ranks for ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(labels: Any, scores: Any) -> dict[str, np.ndarray]:
    """ROC points for every distinct score as threshold (positive when score >= threshold),
    from (0, 0) to (1, 1); tied scores move the curve diagonally. Keys fpr, tpr, threshold."""
    y, s = _binary(labels, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("an ROC curve needs both positives and negatives")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # last index of each distinct score
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    return {
        "fpr": np.r_[0.0, fp / n_neg],
        "tpr": np.r_[0.0, tp / n_pos],
        "threshold": np.r_[np.inf, s[last]],
    }


def sensitivity_specificity(labels: Any, flagged: Any) -> dict[str, float]:
    """Sensitivity (flagged among positives) and specificity (not flagged among negatives),
    with the counts."""
    y, f = _binary(labels, np.asarray(flagged, dtype=np.float64))
    f = f.astype(bool)
    tp, fn = int((y & f).sum()), int((y & ~f).sum())
    tn, fp = int((~y & ~f).sum()), int((~y & f).sum())
    return {
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "tp": tp, "fn": fn, "tn": tn, "fp": fp,
    }  # fmt: skip


def screening_performance(
    labels: Any,
    scores: Any,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """AUROC, and sensitivity and specificity of flagging score > 0, each with a percentile
    bootstrap CI over subjects (resamples lacking a class are skipped for the AUROC and the
    rate that needs it; n_boot_valid counts those kept for the AUROC). Also the ROC points."""
    y, s = _binary(labels, scores)
    if y.all() or not y.any():
        raise ValueError(
            f"screening needs both abnormal and normal subjects; got {int(y.sum())} abnormal "
            f"of {y.size}"
        )
    ss = sensitivity_specificity(y, s > 0)
    rng = np.random.default_rng(seed)
    boots = np.full((n_boot, 3), np.nan)
    for b in range(n_boot):
        i = rng.integers(0, y.size, y.size)
        yb, sb = y[i], s[i]
        boots[b, 0] = roc_auc(yb, sb)
        r = sensitivity_specificity(yb, sb > 0)
        boots[b, 1], boots[b, 2] = r["sensitivity"], r["specificity"]
    alpha = (1 - confidence) / 2
    out: dict[str, Any] = {
        "n": int(y.size), "n_abnormal": int(y.sum()), "prevalence": float(y.mean()),
        "auroc": roc_auc(y, s), **ss, "n_boot": n_boot,
        "n_boot_valid": int(np.isfinite(boots[:, 0]).sum()),
    }  # fmt: skip
    for j, name in enumerate(("auroc", "sensitivity", "specificity")):
        col = boots[:, j][np.isfinite(boots[:, j])]
        lo, hi = np.quantile(col, [alpha, 1 - alpha]) if col.size else (np.nan, np.nan)
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = float(lo), float(hi)
    curve = roc_curve(y, s)
    out["fpr"], out["tpr"] = curve["fpr"], curve["tpr"]
    return out


def _subject_rows(predictions: pd.DataFrame, subjects: pd.DataFrame) -> pd.DataFrame:
    if "id" not in predictions or "id" not in subjects:
        raise ValueError("predictions and subjects need an 'id' column")
    if "sex" not in subjects:
        raise ValueError("the subjects table lacks the column 'sex'")
    cols = ["id", "sex"]
    if "bsa" in subjects:
        cols.append("bsa")
    elif {"height", "weight"} <= set(subjects.columns):
        subjects = subjects.assign(bsa=body_surface_area(subjects["height"], subjects["weight"]))
        cols.append("bsa")
    missing = sorted(set(predictions["id"]) - set(subjects["id"]))
    if missing:
        raise ValueError(
            f"{len(missing)} predicted subjects are not in the subjects table, e.g. {missing[:3]}"
        )
    return predictions.merge(subjects[cols], on="id", how="left", suffixes=("", "_subject"))


def screening_table(
    predictions: pd.DataFrame,
    subjects: pd.DataFrame,
    flags: Sequence[ScreeningFlag] = SCREENING_FLAGS,
    split: str | None = "test",
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    with_curve: bool = True,
) -> pd.DataFrame:
    """One row per flag: the true label from "<CP>_ref", the score from "<CP>_pred" (same
    sex and BSA), prevalence, AUROC, sensitivity and specificity at the published limit with
    bootstrap CIs, and with `with_curve` the ROC points (columns fpr and tpr hold arrays; leave
    them out for a CSV). `subjects` gives id, sex
    and bsa (or height in cm and weight in kg, for Mosteller's BSA)."""
    rows = _subject_rows(split_rows(predictions, split), subjects)
    out = []
    for flag in flags:
        _columns(rows, [flag.cp], ("pred", "ref"))
        bsa = rows["bsa"].to_numpy(float) if flag.indexed and "bsa" in rows else None
        if flag.indexed and bsa is None:
            raise ValueError(f"flag {flag.name} needs bsa, or height and weight, per subject")
        truth = screening_labels(flag, rows[f"{flag.cp}_ref"], rows["sex"], bsa)
        score = screening_score(flag, rows[f"{flag.cp}_pred"], rows["sex"], bsa)
        perf = screening_performance(truth, score, n_boot, seed, confidence)
        if not with_curve:
            del perf["fpr"], perf["tpr"]
        out.append({"flag": flag.name, "label": flag.label, "cp": flag.cp,
                    "verified_limit": flag.verified, **perf})  # fmt: skip
    return pd.DataFrame(out)


def abnormal_counts(
    subjects: pd.DataFrame,
    flags: Sequence[ScreeningFlag] = SCREENING_FLAGS,
    by: str | None = "split",
) -> pd.DataFrame:
    """How many subjects each flag marks abnormal by their reference CPs (columns named as the
    CPs, sex, and bsa or height and weight), per value of `by` (e.g. split) and in total: the
    number that decides whether AUROC, sensitivity and specificity are estimable."""
    table = subjects
    if "bsa" not in table and {"height", "weight"} <= set(table.columns):
        table = table.assign(bsa=body_surface_area(table["height"], table["weight"]))
    groups = [("all", table)]
    if by is not None:
        if by not in table:
            raise ValueError(f"the subjects table lacks the column {by!r}")
        groups += [(str(k), g) for k, g in table.groupby(by, sort=False)]
    rows = []
    for flag in flags:
        if flag.cp not in table:
            raise ValueError(f"the subjects table lacks the column {flag.cp!r} (flag {flag.name})")
        for key, part in groups:
            bsa = part["bsa"].to_numpy(float) if flag.indexed else None
            abnormal = screening_labels(flag, part[flag.cp], part["sex"], bsa)
            rows.append({"flag": flag.name, "label": flag.label, by or "group": key,
                         "n": len(part), "n_abnormal": int(abnormal.sum()),
                         "prevalence": float(abnormal.mean()) if len(part) else float("nan")})  # fmt: skip
    return pd.DataFrame(
        rows, columns=["flag", "label", by or "group", "n", "n_abnormal", "prevalence"]
    )


def interval_table(
    intervals: ConformalIntervals, ids: Sequence[str], cps: Any, cp_names: Sequence[str] = CP_NAMES
) -> pd.DataFrame:
    """Long table for `ctrip predict`: id, phenotype, value, low, high, unit, level, from the
    predictions `cps` (subjects x len(cp_names), in CP units)."""
    values = np.asarray(cps, dtype=np.float64)
    if values.shape != (len(ids), len(cp_names)):
        raise ValueError(
            f"expected predictions of shape {(len(ids), len(cp_names))}, got {values.shape}"
        )
    rows = []
    for i, sid in enumerate(ids):
        for j, cp in enumerate(cp_names):
            low, high = intervals.interval(cp, values[i, j])
            rows.append({"id": sid, "phenotype": cp, "value": values[i, j], "low": float(low),
                         "high": float(high), "unit": CP_UNITS.get(cp, ""),
                         "level": intervals.level})  # fmt: skip
    return pd.DataFrame(rows)


def format_intervals(
    intervals: ConformalIntervals, ids: Sequence[str], cps: Any, cp_names: Sequence[str] = CP_NAMES
) -> str:
    """A text table for `ctrip predict`: one row per phenotype, per subject "value [low, high]"
    at the intervals' level."""
    table = interval_table(intervals, ids, cps, cp_names)
    cells = {
        (r.id, r.phenotype): f"{r.value:.1f} [{r.low:.1f}, {r.high:.1f}]"
        for r in table.itertuples(index=False)
    }
    width = max(22, *(len(str(s)) for s in ids), *(len(c) for c in cells.values()))
    title = f"{intervals.level:.0%} conformal prediction intervals ({intervals.method})"
    header = f"{'phenotype':<10} {'unit':<6} " + " ".join(f"{s:>{width}}" for s in ids)
    rows = [
        f"{cp:<10} {CP_UNITS.get(cp, ''):<6} " + " ".join(f"{cells[(s, cp)]:>{width}}" for s in ids)
        for cp in cp_names
    ]
    return "\n".join([title, header, *rows])


SCREENING_KEYS = ["method", "flag", "label", "cp"]
# The columns of the screening table the book reads, whether or not a flag was estimable.
SCREENING_METRICS = [
    "n", "n_abnormal", "prevalence",
    *(f"{m}{end}" for m in ("auroc", "sensitivity", "specificity") for end in ("", "_ci_low", "_ci_high")),
]  # fmt: skip


def screening_over_seeds(
    predictions: Mapping[str, pd.DataFrame],
    subjects: pd.DataFrame,
    flags: Sequence[ScreeningFlag],
    split: str = "test",
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, dict[str, dict]], dict[str, str]]:
    """Screening of every method's predictions at its largest fine-tuning fraction, averaged
    over seeds: (table, ROC panels of the first seed by flag label then method, reasons).

    A flag that `split` cannot support (no abnormal or no normal subject, e.g. a tiny test
    split) is not an error: its rows say `not_estimable` with the reason, and `reasons` maps
    its label to that reason, so the notebook and the book go on. `predictions` maps a method
    to its Stage III predictions (columns fraction, seed, split, id, <CP>_pred, <CP>_ref)."""
    rows, reasons = [], {}
    panels: dict[str, dict[str, dict]] = {flag.label: {} for flag in flags}
    for method, frame in predictions.items():
        last = frame[np.isclose(frame["fraction"], frame["fraction"].max())]
        for i, (run_seed, fit) in enumerate(last.groupby("seed", sort=True)):
            for flag in flags:
                try:
                    table = screening_table(
                        fit, subjects, [flag], split=split, n_boot=n_boot, seed=seed
                    )
                except ValueError as err:  # not estimable on this split
                    reasons.setdefault(flag.label, f"{split} split: {err}")
                    continue
                row = table.iloc[0].to_dict()
                if i == 0:
                    panels[flag.label][method] = row
                rows.append({**row, "method": method, "seed": run_seed})
    if rows:
        per_seed = pd.DataFrame(rows).drop(columns=["fpr", "tpr"])
        numeric = [c for c in per_seed.select_dtypes("number").columns if c != "seed"]
        table = per_seed.groupby(SCREENING_KEYS, sort=False)[numeric].mean().reset_index()
    else:
        table = pd.DataFrame(columns=SCREENING_KEYS)
    missing = [
        {"method": method, "flag": flag.name, "label": flag.label, "cp": flag.cp,
         "not_estimable": reasons[flag.label]}
        for flag in flags if flag.label in reasons for method in predictions
    ]  # fmt: skip
    if missing:
        estimated = set(zip(table["method"], table["flag"]))
        missing = [m for m in missing if (m["method"], m["flag"]) not in estimated]
        frames = [part for part in (table, pd.DataFrame(missing)) if not part.empty]
        table = pd.concat(frames, ignore_index=True) if frames else table
    for column in [*SCREENING_METRICS, "not_estimable"]:
        if column not in table:
            table[column] = np.nan
    return table, {k: v for k, v in panels.items() if v}, reasons


def screening_markdown(results_dir: str | Path, labels: dict[str, str],
                       coverage_methods: list[str] | tuple[str, ...] = ("L_sup", "L+E+T"),
                       ) -> dict[str, str]:  # fmt: skip
    """The screening chapter's generated parts: abnormal counts, coverage (Table 7) and screening
    performance (Table 8), from the screening run's tables."""
    parts = {}
    results_dir = Path(results_dir)
    counts_file, coverage_file = results_dir / "abnormal_counts.csv", results_dir / "coverage.csv"
    screening_file = results_dir / "screening.csv"
    if not (counts_file.exists() and coverage_file.exists() and screening_file.exists()):
        return {"counts": "*No screening run.*\n", "coverage": "", "screening": "", "facts": ""}
    counts = pd.read_csv(counts_file)
    rows = [[r["label"], str(r["split"]), str(int(r["n"])), str(int(r["n_abnormal"])),
             f"{r['prevalence']:.1%}"] for _, r in counts.iterrows()]  # fmt: skip
    parts["counts"] = (tables.md_table(["flag", "split", "subjects", "abnormal", "prevalence"], rows)
                       if rows else "*No screening flag chosen (screening.flags is empty).*\n")  # fmt: skip
    coverage = pd.read_csv(coverage_file)
    top = coverage[np.isclose(coverage["fraction"], coverage["fraction"].max())]
    level = float(top["level"].iloc[0])
    rows = []
    for cp in CP_NAMES:
        cells = [f"{cp} [{CP_UNITS[cp]}]"]
        for method in labels:
            c = top[(top["method"] == method) & (top["cp"] == cp)]
            cells.append("n/a" if c.empty else tables.ci(c["coverage"].iloc[0], c["ci_low"].iloc[0],
                                                   c["ci_high"].iloc[0], 3))  # fmt: skip
        rows.append(cells)
    caption = (f"Table 7. Empirical coverage on the test split of the {level:.0%} split-conformal "
               "intervals per phenotype and method at the full fine-tuning set (mean over seeds; "
               "Wilson 95% CI).")  # fmt: skip
    parts["coverage"] = (tables.numbers_table(caption, "table-7", ["CP"] + list(labels.values()), rows)
                         + "\n*{download}`Download as CSV (every fraction) "
                         "</book/executed/tables/coverage.csv>`.*\n")  # fmt: skip
    worst = top.loc[(top["coverage"] - level).abs().idxmax()]
    within = float(((top["coverage"] - level).abs() <= 0.03).mean())
    parts["facts"] = (
        f"- Across methods and phenotypes at the full fine-tuning set, {within:.0%} of the "
        f"coverages lie within 3 points of the nominal {level:.0%}; the furthest is "
        f"{labels.get(worst['method'], worst['method'])}, {worst['cp']}: "
        f"{tables.ci(worst['coverage'], worst['ci_low'], worst['ci_high'], 3)}.\n"
    )
    widths = top["mean_width"] if "mean_width" in top else pd.Series(1.0, index=top.index)
    infinite = top[~np.isfinite(widths.astype(float))]
    if len(infinite):  # a validation split too small for the level: whole-line intervals
        need = math.ceil(level / (1 - level) - 1e-9)
        who = ", ".join(dict.fromkeys(labels.get(m, m) for m in infinite["method"]))
        parts["facts"] = (
            f"- Coverage not estimable for {who}: their {level:.0%} intervals are infinite, "
            f"because the validation split is too small for that level (split-conformal needs "
            f"at least {need} calibration subjects), so a coverage of 1 says nothing.\n"
        ) + parts["facts"]
    for method in coverage_methods:  # the rows the coverage criterion is judged on
        own = top[top["method"] == method]
        if own.empty:
            continue
        off = own[(own["coverage"] - level).abs() > 0.03]
        line = (f"- {labels.get(method, method)}: {len(own) - len(off)} of {len(own)} phenotypes "
                f"within 3 points of {level:.0%}")  # fmt: skip
        if len(off):
            line += "; outside: " + ", ".join(
                f"{r['cp']} {tables.ci(r['coverage'], r['ci_low'], r['ci_high'], 3)}"
                + (" (the nominal level lies inside its CI)" if r["ci_low"] <= level <= r["ci_high"] else "")
                for _, r in off.iterrows()
            )  # fmt: skip
        parts["facts"] += line + ".\n"
    screening = pd.read_csv(screening_file)
    reasons = screening.get("not_estimable", pd.Series(np.nan, index=screening.index))
    rows = [[r["label"], labels.get(r["method"], r["method"]),
             *([tables.ci(r[m], r[f"{m}_ci_low"], r[f"{m}_ci_high"], 3)
                for m in ("auroc", "sensitivity", "specificity")]
               if pd.isna(reasons[i]) else [f"not estimable ({reasons[i]})", "", ""])]
            for i, r in screening.iterrows()]  # fmt: skip
    if not rows:
        rows = [["none chosen (screening.flags is empty)", "", "", "", ""]]
    caption = ("Table 8. Screening on the test split at the full fine-tuning set: AUROC, and "
               "sensitivity and specificity at the published limit (mean over seeds; bootstrap "
               "95% CIs).")  # fmt: skip
    parts["screening"] = (tables.numbers_table(caption, "table-8", ["flag", "Method", "AUROC [95% CI]",
                                          "sensitivity [95% CI]", "specificity [95% CI]"], rows)
                          + "\n*{download}`Download as CSV </book/executed/tables/screening.csv>`.*\n")  # fmt: skip
    return parts
