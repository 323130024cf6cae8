"""Subjects and their 18 cardiac phenotypes, drawn from a small set of latent values.

Every magnitude below is written next to its source. The word "ASSUMED" followed by a key in
parentheses marks a value for which no published figure was identified: its direction is
documented, its size is a plain guess, and the key is its row in the data chapter's table of
assumptions (book/data.md), which says why.
Nothing here is tuned to favour any method.

References
- UKB: UK Biobank imaging-visit population means, age 64 +- 7.5, height 168.5 cm, weight
  77.9 kg, BMI 27.5 +- 4.4, SBP 138.7, DBP 82.5 mmHg, pulse 71 +- 10: ASSUMED(ukb-means), the
  primary table was not identified (the UK Biobank Data Showcase holds the field summaries).
- P17: Petersen et al. 2017, J Cardiovasc Magn Reson 19:18, UK Biobank healthy reference ranges
  (n = 804).
- WHI: Rautaharju et al. 2013, J Electrocardiol 46:707, ECG normal standards of 36,299 healthy
  women (heart rate 66 +- 9.2 bpm).
- Mosteller 1987, NEJM 317:1098 (BSA); Mifflin et al. 1990, AJCN 51:241 (basal metabolic rate).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctrip.data.schema import CP_NAMES

POPULATION, LOCALIZER, CMR, ECG, MISSING = range(5)  # independent random streams per subject
N_NORMAL, N_UNIFORM = 32, 16
MYOCARDIAL_DENSITY = 1.05  # g/mL: LVM = myocardial volume x 1.05 (Bai et al. 2020, Nat Med 26:1654)
# Heart orientation (mean, SD in degrees). Hoekema et al. 1999 (J Electrocardiol, PMID 10338032),
# 25 healthy subjects: long axis 27.1 +- 8.8 deg to the transverse plane (the elevation) and
# 38 +- 5 deg to the frontal plane, which at that elevation is an azimuth (from anterior toward
# the left, in the transverse plane) of 46 +- 6 deg.
HEART_AZIMUTH_DEG = (46.0, 6.0)
HEART_ELEVATION_DEG = (27.1, 8.8)

# Residual (within sex, size and age) correlations of the CP latents, in this order:
# LV size, LVEF, LV mass, RV stroke-volume mismatch, RVEF, LA size, LAEF, RA size, RAEF.
# Chosen so that the cohort's total correlations land near LVM-LVEDV ~0.6, EF-EDV ~-0.2 and
# LAVmax-LVEDV ~0.4 (ASSUMED(cp-correlations)); the LVEF-RVEF, LA-RA and LAEF-RAEF couplings
# are positive and moderate (ASSUMED(cp-correlations)).
_RESIDUAL_CORR = np.array([
    [1.00, 0.00, 0.30, 0.00, 0.00, 0.22, 0.00, 0.20, 0.00],
    [0.00, 1.00, 0.00, 0.00, 0.50, 0.00, 0.20, 0.00, 0.10],
    [0.30, 0.00, 1.00, 0.00, 0.00, 0.10, 0.00, 0.00, 0.00],
    [0.00, 0.00, 0.00, 1.00, 0.00, 0.00, 0.00, 0.00, 0.00],
    [0.00, 0.50, 0.00, 0.00, 1.00, 0.00, 0.00, 0.00, 0.20],
    [0.22, 0.00, 0.10, 0.00, 0.00, 1.00, -0.20, 0.40, 0.00],
    [0.00, 0.20, 0.00, 0.00, 0.00, -0.20, 1.00, 0.00, 0.30],
    [0.20, 0.00, 0.00, 0.00, 0.00, 0.40, 0.00, 1.00, -0.20],
    [0.00, 0.10, 0.00, 0.00, 0.20, 0.00, 0.30, -0.20, 1.00],
])  # fmt: skip
_RESIDUAL_CHOL = np.linalg.cholesky(_RESIDUAL_CORR)

# Sex-specific reference values (female, male). Volumes in mL at the reference BSA below.
BSA_REF = (1.75, 2.00)  # typical BSA of P17's healthy (BMI < 30) women, men, m2: ASSUMED(bsa-ref)
REFERENCE = {
    # P17: LVEF 61 +- 5 (women), 58 +- 5 % (men); LVSV 75 +- 14, 96 +- 20 mL; so LVEDV =
    # SV / EF = 123, 166 mL (women's 95% range 88-161 mL: SD ~ 18.6 mL, i.e. 15% log-SD).
    "LVEDV": (123.0, 166.0),
    "LVEDV_logsd": 0.15,
    "LVEF": (61.0, 58.0),
    "LVEF_sd": 5.0,
    # P17: LV mass index 42 +- 7 (women), 53 +- 9 g/m2 (men): 17% log-SD.
    "LVMI": (42.0, 53.0),
    "LVMI_logsd": 0.17,
    # P17 women's RVEF 95% range 47-68 % (mean 57.5, SD 5.4); RVEF is lower in men (P17),
    # the 3-point gap is ASSUMED(rvef-sex).
    "RVEF": (57.5, 54.5),
    "RVEF_sd": 5.4,
    # Atrial values: approximate P17 atrial reference means (LA and RA by the biplane
    # area-length method), not checked against the table: LAVmax 64 / 73 mL, LAEF 60 +- 8 %,
    # RAVmax 78 / 100 mL, RAEF 46 +- 9 %, log-SDs 0.25 / 0.27: ASSUMED(atrial-reference).
    "LAVmax": (64.0, 73.0),
    "LAVmax_logsd": 0.25,
    "LAEF": (60.0, 59.0),
    "LAEF_sd": 8.0,
    "RAVmax": (78.0, 100.0),
    "RAVmax_logsd": 0.27,
    "RAEF": (46.0, 45.0),
    "RAEF_sd": 9.0,
}


def subject_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """The random stream `stream` of subject `index`: independent of chunking and workers."""
    return np.random.default_rng([int(seed), int(index), int(stream)])


def _draws(seed: int, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.empty((len(indices), N_NORMAL))
    u = np.empty((len(indices), N_UNIFORM))
    for row, index in enumerate(indices):
        rng = subject_rng(seed, index, POPULATION)
        z[row] = rng.standard_normal(N_NORMAL)
        u[row] = rng.random(N_UNIFORM)
    return z, u


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def sample_population(seed: int, indices: np.ndarray | range) -> pd.DataFrame:
    """Covariates, the 18 CPs and the shape latents of subjects `indices` (no images, no ECG).

    Columns: sex, age, height, weight, bmi, bsa, sbp, dbp, heart_rate (pulse at the blood
    pressure reading), smoking, diabetes, hypertension, activity, basal_metabolic_rate, the CPs,
    and latent columns (prefixed `lat_`) used by the imaging and ECG generators.
    """
    indices = np.asarray(indices, dtype=np.int64)
    z, u = _draws(seed, indices)
    male = u[:, 0] < 0.48  # UKB imaging cohort ~48% men
    m = male.astype(float)
    pick = lambda pair: np.where(male, pair[1], pair[0])  # noqa: E731

    age = np.clip(64.0 + 7.5 * z[:, 0], 45.0, 82.0)  # UKB
    # Standing height by sex (UK Biobank field 50): ~162.5 +- 6.2 cm women, 175.9 +- 6.8 cm
    # men, pooled 168.5 cm (ASSUMED(ukb-means)).
    height = np.where(male, 175.9 + 6.8 * z[:, 1], 162.5 + 6.2 * z[:, 1])
    # BMI log-normal with UKB mean 27.5 and SD 4.4.
    bmi_sigma = np.sqrt(np.log1p((4.4 / 27.5) ** 2))
    bmi = np.exp(np.log(27.5) - bmi_sigma**2 / 2 + bmi_sigma * z[:, 2])
    weight = bmi * (height / 100.0) ** 2
    bsa = np.sqrt(height * weight / 3600.0)  # Mosteller 1987

    # Blood pressure: UKB means SBP 138.7, DBP 82.5 mmHg. Slopes ASSUMED(bp-slopes) (directions
    # well established): +0.6 mmHg/yr of age, +4 mmHg in men, +0.9 mmHg per BMI unit; SBP-DBP r ~ 0.7.
    sbp = 138.7 + 0.6 * (age - 64) + 4.0 * (m - 0.48) + 0.9 * (bmi - 27.5) + 16.0 * z[:, 3]
    dbp = 82.5 + 0.5 * (bmi - 27.5) + 2.0 * (m - 0.48) + 9.5 * (0.7 * z[:, 3] + 0.714 * z[:, 4])
    activity = np.select(
        [u[:, 1] < 0.2, u[:, 1] < 0.6], ["low", "moderate"], "high"
    )  # IPAQ activity shares 20/40/40%: ASSUMED(lifestyle-shares)
    # Resting heart rate of the imaging visit (ECG and CMR): women 66 +- 9 bpm (WHI); men 3 bpm
    # lower and high activity 3 bpm lower are ASSUMED(hr-sex-activity).
    hr = 66.0 - 3.0 * m - 3.0 * (activity == "high") + 9.0 * z[:, 5]
    hr = np.clip(hr, 42.0, 115.0)
    # Pulse at the blood-pressure reading (field 102): UKB mean 71 +- 10, which sits ~7.5 bpm
    # above the mean resting ECG rate of this model.
    pulse = hr + 7.5 + 4.0 * z[:, 6]

    smoking = np.select(
        [u[:, 2] < 0.58, u[:, 2] < 0.94], ["never", "previous"], "current"
    )  # UKB-like smoking shares: ASSUMED(lifestyle-shares)
    diabetes = np.where(
        u[:, 3] < _sigmoid(-3.0 + 0.12 * (bmi - 27.5) + 0.04 * (age - 64)), "yes", "no"
    )  # ~5% diabetes: ASSUMED(lifestyle-shares)
    hypertension = np.where(
        u[:, 4] < _sigmoid(-1.1 + 0.05 * (sbp - 138.7) + 0.04 * (age - 64)), "yes", "no"
    )  # ~25% hypertension: ASSUMED(lifestyle-shares)
    # Basal metabolic rate: Mifflin-St Jeor (kcal/day) in kJ, with 4% measurement noise
    # (UKB field 23105 comes from bio-impedance; the noise level is ASSUMED(bmr-noise)).
    bmr_kcal = 10 * weight + 6.25 * height - 5 * age + np.where(male, 5.0, -161.0)
    bmr = 4.184 * bmr_kcal * (1 + 0.04 * z[:, 7])

    # ---- cardiac phenotypes ------------------------------------------------------------------
    # Correlated residuals z @ L^T, summed term by term: a BLAS product's rounding depends on
    # how many rows it is given and on the CPU's kernel, so a subject's CPs would depend on its
    # chunk (and on OPENBLAS_CORETYPE).
    e = sum(z[:, 8 + j, None] * _RESIDUAL_CHOL[:, j] for j in range(len(_RESIDUAL_CHOL)))
    size = bsa / pick(BSA_REF)  # volumes and mass scale with BSA (indexing, P17)
    aging = np.exp(-0.0045 * (age - 64))  # P17: smaller with age; -0.45%/yr ASSUMED(age-slopes)
    lvedv = pick(REFERENCE["LVEDV"]) * size * aging * np.exp(REFERENCE["LVEDV_logsd"] * e[:, 0])
    lvef = pick(REFERENCE["LVEF"]) + REFERENCE["LVEF_sd"] * e[:, 1]  # P17: static with age
    # LV mass = LVMI x BSA; +0.2 g per mmHg SBP above the mean (pressure load) is
    # ASSUMED(lvm-sbp).
    lvm = pick(REFERENCE["LVMI"]) * bsa * np.exp(REFERENCE["LVMI_logsd"] * e[:, 2])
    lvm = lvm + 0.2 * (sbp - 138.7)
    rvef = pick(REFERENCE["RVEF"]) + REFERENCE["RVEF_sd"] * e[:, 4]
    lavmax = pick(REFERENCE["LAVmax"]) * size * np.exp(REFERENCE["LAVmax_logsd"] * e[:, 5])
    lavmax = lavmax * np.exp(0.004 * (age - 64))  # LA grows with age: ASSUMED(age-slopes)
    laef = pick(REFERENCE["LAEF"]) - 0.15 * (age - 64) + REFERENCE["LAEF_sd"] * e[:, 6]
    ravmax = pick(REFERENCE["RAVmax"]) * size * np.exp(REFERENCE["RAVmax_logsd"] * e[:, 7])
    raef = pick(REFERENCE["RAEF"]) + REFERENCE["RAEF_sd"] * e[:, 8]

    # A small share of abnormal hearts so the tails are not empty (shares and sizes
    # ASSUMED(abnormal-hearts), above the population prevalence on purpose): 2% dilated with reduced EF, 3% hypertrophied.
    dilated = u[:, 5] < 0.02
    hypertrophied = (u[:, 5] >= 0.02) & (u[:, 5] < 0.05)
    lvedv = np.where(dilated, lvedv * 1.6, np.where(hypertrophied, lvedv * 0.95, lvedv))
    lvef = np.where(dilated, 33.0 + 7.0 * z[:, 17], np.where(hypertrophied, lvef + 3.0, lvef))
    lvm = np.where(dilated, lvm * 1.35, np.where(hypertrophied, lvm * 1.5, lvm))
    rvef = np.where(dilated, rvef - 8.0, rvef)
    lavmax = np.where(dilated, lavmax * 1.5, np.where(hypertrophied, lavmax * 1.3, lavmax))
    laef = np.where(dilated | hypertrophied, laef - 10.0, laef)

    lvef = np.clip(lvef, 12.0, 82.0)
    rvef = np.clip(rvef, 20.0, 82.0)
    laef = np.clip(laef, 15.0, 85.0)
    raef = np.clip(raef, 10.0, 80.0)
    lvesv = lvedv * (1 - lvef / 100.0)
    lvsv = lvedv - lvesv
    # RV and LV stroke volumes are equal in the absence of shunts and regurgitation; CMR measures
    # them with a ~9% discrepancy, giving LVSV-RVSV r ~ 0.9 (ASSUMED(cp-correlations)).
    rvsv = lvsv * np.exp(0.09 * e[:, 3])
    rvedv = 100.0 * rvsv / rvef
    rvesv = rvedv - rvsv
    lavmin = lavmax * (1 - laef / 100.0)
    ravmin = ravmax * (1 - raef / 100.0)

    frame = pd.DataFrame(
        {
            "sex": np.where(male, "male", "female"),
            "age": age,
            "height": height,
            "weight": weight,
            "bmi": bmi,
            "bsa": bsa,
            "sbp": sbp,
            "dbp": dbp,
            "heart_rate": pulse,
            "smoking": smoking,
            "diabetes": diabetes,
            "hypertension": hypertension,
            "activity": activity,
            "basal_metabolic_rate": bmr,
        }
    )
    cps = {
        "LVEDV": lvedv, "LVESV": lvesv, "LVSV": lvsv, "LVEF": lvef,
        "LVCO": lvsv * hr / 1000.0, "LVM": lvm,
        "RVEDV": rvedv, "RVESV": rvesv, "RVSV": rvsv, "RVEF": rvef,
        "LAVmax": lavmax, "LAVmin": lavmin, "LASV": lavmax - lavmin, "LAEF": laef,
        "RAVmax": ravmax, "RAVmin": ravmin, "RASV": ravmax - ravmin, "RAEF": raef,
    }  # fmt: skip
    for name in CP_NAMES:
        frame[name] = cps[name]
    # Identities hold exactly on the stored values (recomputed from the rounded-free floats).
    frame["LVSV"] = frame["LVEDV"] - frame["LVESV"]
    frame["LVEF"] = 100.0 * frame["LVSV"] / frame["LVEDV"]
    frame["LVCO"] = frame["LVSV"] * hr / 1000.0
    frame["RVSV"] = frame["RVEDV"] - frame["RVESV"]
    frame["RVEF"] = 100.0 * frame["RVSV"] / frame["RVEDV"]
    frame["LASV"] = frame["LAVmax"] - frame["LAVmin"]
    frame["LAEF"] = 100.0 * frame["LASV"] / frame["LAVmax"]
    frame["RASV"] = frame["RAVmax"] - frame["RAVmin"]
    frame["RAEF"] = 100.0 * frame["RASV"] / frame["RAVmax"]

    # Latents shared by the generators (never training inputs).
    frame["lat_index"] = indices
    frame["lat_heart_rate"] = hr  # resting rate during ECG and cine (LVCO uses it)
    frame["lat_dilated"] = dilated
    frame["lat_hypertrophied"] = hypertrophied
    frame["lat_lv_aspect"] = 3.6 + 0.25 * z[:, 18]  # LV length / semi-axis: ASSUMED(heart-shape)
    frame["lat_heart_azimuth"] = np.deg2rad(HEART_AZIMUTH_DEG[0] + HEART_AZIMUTH_DEG[1] * z[:, 19])
    frame["lat_heart_elevation"] = np.deg2rad(
        HEART_ELEVATION_DEG[0] + HEART_ELEVATION_DEG[1] * z[:, 20]
    )
    frame["lat_heart_dx"] = 8.0 * z[:, 21]  # mm, position in the chest: ASSUMED(heart-shape)
    frame["lat_heart_dy"] = 6.0 * z[:, 22]
    frame["lat_body_shape"] = np.exp(0.06 * z[:, 23])  # chest width/depth: ASSUMED(heart-shape)
    return frame
