"""12-lead ECG from a vectorcardiogram (VCG) projected through each subject's own lead matrix.

Each beat is a sum of Gaussian waves in three Frank dimensions (x: patient left, y: feet,
z: back): a P wave, a QRS made of septal, main and terminal forces, and an asymmetric T wave.
The physiology sets each wave's VCG vector; the subject's anatomy and the recording then decide
how it reaches the leads: the heart's orientation in the chest rotates every vector, and the
precordial electrodes sit where the technician put them, so each subject has its own lead
matrix (the Dower matrix with displaced precordial rows). Noise is added per electrode (RA, LA,
LL, V1-V6) and the limb leads are formed from electrode differences, so III = II - I,
aVR = -(I + II)/2, aVL = I - II/2 and aVF = II - I/2 hold exactly on the stored float32 values.

The signal is rendered from `SIGNAL_COLUMNS` alone (timing and every wave's amplitude on every
lead) plus noise: those columns are everything about the subject that reaches the ECG, which is
what the oracle ceiling of the ECG is computed from.

Sources (magnitudes):
- Dower, Machado & Osborne 1980 (Clin Cardiol 3:87), 12-lead-from-Frank matrix; as used by Edenbrandt
  & Pahlm 1988 and open ECG/VCG software (e.g. BRAVEHEART).
- Resting ECG of 36,299 healthy women (Women's Health Initiative; Rautaharju et al. 2013,
  J Electrocardiol 46:707): HR 66 +- 9.2 bpm, PR 158 +- 33.9 ms, QRS 85 +- 8.1 ms, rate-adjusted
  QT 413 +- 14.2 ms. Men's QRS 6-10 ms longer, QRS duration +5.4 ms per 100 g LV mass and
  +4.6 ms per 10 mm LV end-diastolic diameter, QRS amplitude +0.08 mV per 100 g: primary source
  not identified, ASSUMED(qrs-slopes).
- Framingham QT correction (Sagie et al. 1992, Am J Cardiol 70:797): QT = QTc - 154 ms (1 - RR).
- Sokolow-Lyon voltage vs CMR LV mass (index): r = 0.25 in healthy adults (Carlsson et al. 2006,
  J Electrocardiol 39:67), r = 0.28 in young men (LARGE Heart study, JCMR 2009, 11:2).
- Swiss conscripts (n = 41,806; Ann Noninvasive Electrocardiol 2009, 14:227): Sokolow-Lyon
  voltages 5-19% lower at BMI >= 25 than at 18.5-25, the net fall (heavier hearts included; see `HABITUS_DAMPING_PER_BMI`).
- Heart orientation: long axis 27.1 +- 8.8 deg to the transverse plane and 38 +- 5 deg to the
  frontal plane in 25 healthy subjects (Hoekema et al. 1999, J Electrocardiol, PMID 10338032);
  the anterior-lead amplitudes are dominated by the heart's position and orientation relative
  to the electrodes, body and heart size playing a secondary role (van Oosterom et al. 2000,
  J Electrocardiol 33 Suppl:219).
- Precordial electrode placement in routine practice: on average 1.14 inch (2.9 cm) from the
  anatomical site (30 technicians; Wenger & Kligfield 1996, J Electrocardiol 29:179); shifts
  beyond 2 cm change the QRS morphology of V1-V4, V5-V6 mostly scale (Kania et al. 2014, Med
  Biol Eng Comput 52:109).
- Calibration: a CNN on real UK Biobank 12-lead ECGs predicted CMR LV mass with r = 0.79
  (Khurshid et al. 2021, Circ Cardiovasc Imaging 14:e012281); `benchmarks/bench_ecg_lvm.py`
  checks the simulated ECG carries LV mass at that level (see `AMPLITUDE_SPREAD`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctrip.data.schema import LEADS
from ctrip.data.synth.anatomy import heart_frame, lv_diameter_ed
from ctrip.data.synth.population import ECG, HEART_AZIMUTH_DEG, HEART_ELEVATION_DEG, subject_rng

# Dower (1980): rows I, II, V1..V6; columns Frank X, Y, Z.
DOWER = np.array([
    [0.632, -0.235, 0.059], [0.235, 1.066, -0.132],
    [-0.515, 0.157, -0.917], [0.044, 0.164, -1.387], [0.882, 0.098, -1.277],
    [1.213, 0.127, -0.601], [1.125, 0.127, -0.086], [0.831, 0.076, 0.230],
])  # fmt: skip
INDEPENDENT_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
WAVES = ("p", "septal", "main", "terminal", "t")
ELECTRODES = ("RA", "LA", "LL", "V1", "V2", "V3", "V4", "V5", "V6")
MAINS_HZ = 50.0  # UK mains
MAX_BEATS = 32
N_NORMAL = 32
REF_LVM_G, REF_LVEDD_MM = 78.0, 51.0  # women's cohort means, reference point of the slopes
LVM_FORCE_MV_PER_100G = 0.6  # posterior QRS force per 100 g LV mass (see `ecg_parameters`)
LVM_FORCE_DIR = (0.1, 0.0, 1.0)  # posterior, slightly leftward (Frank x, y, z)
# Precordial electrode displacement across the chest. Wenger & Kligfield's mean radial distance
# of 2.9 cm is a Rayleigh mean, i.e. 2.3 cm SD per axis; the horizontal component moves an
# electrode along the row of precordial sites, ~5 cm apart (spacing ASSUMED(electrode-spacing),
# a typical adult chest), so 0.46 site spacings SD. The vertical component (the same 2.3 cm SD)
# moves an electrode up or down the chest: its lead vector turns toward the head or the feet by
# the angle the lead vectors turn per site along the row, which for the Dower rows is 27 degrees
# (V1 to V6 span 135 degrees of the transverse plane), i.e. a lead vector follows the direction
# from the heart to its electrode, horizontally and vertically alike.
ELECTRODE_SHIFT_SD_SITES = 2.3 / 5.0
# Individual size of the ventricular forces that the phenotypes do not explain (myocardial
# conduction, torso conductivity; log-SD). ASSUMED(qrs-amplitude), kept after one check against the published ECG
# -> LV mass r of 0.79 (Khurshid et al. 2021) with `benchmarks/bench_ecg_lvm.py`.
AMPLITUDE_SPREAD = 0.18
CONDUCTION_SPREAD = 0.3  # ASSUMED(conduction-spread), see `ecg_parameters`
# Whole-torso transfer (all waves alike: conductivity of lungs and chest wall); log-SD
# ASSUMED(torso-gain).
TORSO_GAIN_SPREAD = 0.10
# Body habitus damps every wave (fat and distance between heart and electrodes). The Swiss
# conscripts' Sokolow-Lyon voltages, 5-19% lower at BMI >= 25 than at 18.5-25, are the net fall,
# heavier hearts of heavier people included (LV mass grows with body size here as in life), so
# the damping per BMI unit is the one at which the simulated net fall is the middle of that range
# (~12%; the data card's physiology report checks it).
HABITUS_DAMPING_PER_BMI = 0.034
TIMING_COLUMNS = ("ecg_hr", "ecg_rr", "ecg_pr", "ecg_p_dur", "ecg_qrs_dur", "ecg_qt")
AMPLITUDE_COLUMNS = tuple(f"ecg_amp_{w}_{lead}" for w in WAVES for lead in INDEPENDENT_LEADS)
SIGNAL_COLUMNS = TIMING_COLUMNS + AMPLITUDE_COLUMNS  # everything of the subject in the signal
NOISE_COLUMNS = ("ecg_emg_sigma", "ecg_hum_amp", "ecg_wander_amp")  # independent of the subject


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def heart_rotation(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """(B, 3, 3) rotation in Frank coordinates from the average heart orientation to each one.

    `heart_frame` rows are the heart's axes in body coordinates, so a vector fixed to the heart
    moves from the average frame M to a subject's frame A by A^T M.
    """
    mean = heart_frame(np.deg2rad([HEART_AZIMUTH_DEG[0]]), np.deg2rad([HEART_ELEVATION_DEG[0]]))
    body = np.einsum("bki,kj->bij", heart_frame(azimuth, elevation), mean[0])
    # body (x left, y posterior, z head) -> Frank (x left, y feet, z back)
    to_frank = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    return to_frank @ body @ to_frank.T


def _turn_per_site() -> float:
    """Mean angle (rad) between neighbouring precordial Dower rows in the transverse plane."""
    angle = np.arctan2(DOWER[2:, 2], DOWER[2:, 0])
    return float(abs(angle[-1] - angle[0]) / 5)


def lead_matrices(shifts: np.ndarray, lifts: np.ndarray | None = None) -> np.ndarray:
    """(B, 8, 3) Dower rows with each precordial electrode moved by `shifts` (B, 6) site units
    along the row and by `lifts` (B, 6) site units toward the head (negative: the feet).

    A displaced electrode records the lead vector of its new position, interpolated linearly
    between the neighbouring sites (extrapolated beyond V1 and V6 from the end segments). A lift
    turns that vector toward the head (Frank -y) by the angle between neighbouring sites per
    site unit, and shrinks it as the electrode moves away from the heart (1 / distance^2 of a
    dipole: cos^2 of that angle).
    """
    sites = np.arange(6, dtype=float)
    rows = DOWER[2:]
    position = np.clip(sites + shifts, -1.0, 6.0)
    left = np.clip(np.floor(position), 0, 4).astype(int)
    frac = (position - left)[..., None]
    precordial = rows[left] * (1 - frac) + rows[left + 1] * frac
    if lifts is not None:
        theta = _turn_per_site() * lifts
        horizontal = precordial * np.array([1.0, 0.0, 1.0])
        size = np.linalg.norm(horizontal, axis=-1)
        across = horizontal / size[..., None]  # unit horizontal direction of each lead vector
        up = -precordial[..., 1]  # component toward the head
        cos, sin = np.cos(theta), np.sin(theta)
        new_size, new_up = size * cos - up * sin, size * sin + up * cos
        precordial = (cos**2)[..., None] * (
            across * new_size[..., None] + np.array([0.0, -1.0, 0.0]) * new_up[..., None]
        )
    limb = np.broadcast_to(DOWER[:2], (len(shifts), 2, 3))
    return np.concatenate([limb, precordial], axis=1)


def _apply(matrices: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(B, k, 3) @ (B, 3) as elementwise sums (no BLAS: the same bits whatever the batch)."""
    return sum(matrices[:, :, j] * vectors[:, j, None] for j in range(3))


def ecg_parameters(population: pd.DataFrame, z: np.ndarray) -> pd.DataFrame:
    """Generating parameters of each subject's ECG (durations in ms, amplitudes in mV).

    Physiological quantities (rate, durations, VCG forces), the recording's nuisance (heart
    orientation, electrode positions, torso transfer) and, from both, `SIGNAL_COLUMNS`.
    """
    n = len(population)
    male = (population["sex"] == "male").to_numpy().astype(float)
    lvm, lavmax = population["LVM"].to_numpy(), population["LAVmax"].to_numpy()
    lvef, bmi = population["LVEF"].to_numpy(), population["bmi"].to_numpy()
    lvedd = lv_diameter_ed(
        {"LVEDV": population["LVEDV"].to_numpy(), "LVM": lvm},
        population["lat_lv_aspect"].to_numpy(),
    )
    low_ef = np.clip((45.0 - lvef) / 15.0, 0.0, 1.0)  # 0 at EF >= 45%, 1 at EF <= 30%
    hr = population["lat_heart_rate"].to_numpy()
    rr = 60.0 / hr
    # P wave: longer and larger with LA size (direction established; slopes ASSUMED(p-wave)).
    p_dur = np.clip(100.0 + 0.25 * (lavmax - 64.0) + 10.0 * z[:, 0], 60.0, 170.0)
    p_amp = 0.12 * (1 + 0.004 * (lavmax - 64.0)) * np.exp(0.2 * z[:, 1])
    pr = np.clip(
        (158.0 + 6.0 * male) * np.exp(0.2 * z[:, 2]), 100.0, 320.0
    )  # men +6 ms: ASSUMED(ecg-sex)
    pr = np.maximum(pr, p_dur + 30.0)
    # QRS duration: slopes for LV mass and diameter ASSUMED(qrs-slopes); the men's residual
    # +4 ms brings the total sex gap to ~8 ms; wide QRS with reduced EF (LBBB-like,
    # ASSUMED(low-ef-pattern): up to +25 ms).
    qrs = 85.0 + 5.4 * (lvm - REF_LVM_G) / 100.0 + 4.6 * (lvedd - REF_LVEDD_MM) / 10.0
    qrs = np.clip(qrs + 4.0 * male + 25.0 * low_ef + 7.0 * z[:, 3], 60.0, 190.0)
    # QRS voltage. Two published figures describe it: +0.08 mV per 100 g LV mass and a
    # Sokolow-Lyon (SV1 + max RV5/RV6) correlation with LV mass index of only r ~ 0.3 (CMR:
    # Carlsson et al. 2006, J Electrocardiol 39:67, healthy adults, r = 0.25; LARGE Heart study,
    # JCMR 2009 11:2, young men, r = 0.28). Read as one slope of one amplitude they contradict
    # each other: 0.08 mV per 100 g (~0.03 mV per SD of LV mass) against a ~2 mV index with ~30%
    # between-person spread gives r < 0.05. They agree once the extra mass adds a QRS force of
    # its own pointing posteriorly, as in left-ventricular hypertrophy (deep S waves in V1-V3,
    # the leads whose S waves track LV mass best; limb-lead R waves barely do: Sokolow & Lyon
    # 1949, Am Heart J 37:161). The Dower matrix projects a posterior force onto leads I and II
    # at only 0.06 and 0.13 of its size, onto V1-V3 at 0.9-1.4. With 0.6 mV per 100 g for that
    # force, and the recording's nuisance below, the simulated Sokolow-Lyon vs LVMI correlation
    # is ~0.22-0.25, while limb-lead QRS amplitudes move by only a few hundredths of a mV per 100 g:
    # the 0.6 is calibrated to the two published figures, this correlation and the ECG -> LV
    # mass r of a CNN (Khurshid et al. 2021; 0.8 gave Sokolow-Lyon r 0.32 and CNN r 0.90). With
    # the nuisance below, `benchmarks/bench_ecg_lvm.py --n 20000 --epochs 12 --seed 1` measures
    # CNN r 0.825 (16,000 training subjects), the ECG's LV mass ceiling 0.91 (fitted on 400,000
    # reference subjects) and Sokolow-Lyon vs LVMI r 0.22. Base spatial QRS
    # amplitude 1.3 mV (typical Frank-lead magnitude, ASSUMED(qrs-amplitude)).
    qrs_amp = 1.3 * np.exp(AMPLITUDE_SPREAD * z[:, 4])
    lvm_force = LVM_FORCE_MV_PER_100G * (lvm - REF_LVM_G) / 100.0
    # Frontal QRS axis ~45 +- 25 deg, leftward with BMI (Kurisu et al. 2015). 0.5 deg per kg/m2 is
    # ASSUMED(axis-bmi): a steeper shift turns the QRS toward V5-V6 enough to cancel the fall of Sokolow-Lyon
    # voltage with BMI that the Swiss conscripts show (5-19% lower at BMI >= 25; simulated ~12%).
    axis = np.deg2rad(45.0 - 0.5 * (bmi - 27.5) + 25.0 * z[:, 5])
    qtc = 413.0 - 8.0 * male + 14.0 * z[:, 6]  # men ~8 ms shorter: ASSUMED(ecg-sex)
    qt = qtc - 154.0 * (1.0 - rr)  # Framingham
    # T wave: 0.35 mV, spatial QRS-T angle ~40 deg (ASSUMED(t-wave)); reduced EF flattens T and
    # widens the QRS-T angle (ASSUMED(low-ef-pattern)).
    t_amp = 0.35 * np.exp(0.25 * z[:, 7]) * (1 - 0.5 * low_ef)
    qrst_angle = np.deg2rad(40.0 + 15.0 * z[:, 8] + 90.0 * low_ef)
    posterior = 0.5 + 0.2 * z[:, 9]
    # Conduction variability independent of the phenotypes: the septal and terminal forces vary
    # in size and direction on their own (log-SD and direction jitter ~0.3 each, about 17
    # degrees: ASSUMED(conduction-spread)), so they do not reveal the size of the main force.
    septal = _unit(np.array([-0.6, 0.2, -0.7]) + CONDUCTION_SPREAD * z[:, 17:20])
    terminal = _unit(np.array([-0.5, -0.6, 0.6]) + CONDUCTION_SPREAD * z[:, 20:23])
    septal_amp = 0.15 * qrs_amp * np.exp(CONDUCTION_SPREAD * z[:, 23])
    terminal_amp = 0.3 * qrs_amp * np.exp(CONDUCTION_SPREAD * z[:, 24])

    # VCG vector of each wave, for the average heart orientation.
    r_dir = _unit(np.stack([np.cos(axis), np.sin(axis), posterior], axis=-1))
    t_dir = _unit(  # the T vector rotated from the QRS vector toward anterior
        np.cos(qrst_angle)[:, None] * r_dir
        + np.sin(qrst_angle)[:, None] * _unit(np.cross([0.0, 1.0, 0.0], r_dir))
    )
    vectors = {
        "p": _unit(np.tile([0.6, 0.75, 0.1], (n, 1))) * p_amp[:, None],  # left, inferior
        "septal": septal * septal_amp[:, None],
        "main": r_dir * qrs_amp[:, None]
        + _unit(np.tile(LVM_FORCE_DIR, (n, 1))) * lvm_force[:, None],
        "terminal": terminal * terminal_amp[:, None],
        "t": t_dir * t_amp[:, None],
    }
    # How the vectors reach the leads: the heart's own orientation (Hoekema et al. 1999), the
    # electrodes' positions across and along the chest (Wenger & Kligfield 1996), body habitus
    # damping every wave (`HABITUS_DAMPING_PER_BMI`, Swiss conscripts) and the torso's
    # individual transfer.
    rotation = heart_rotation(
        population["lat_heart_azimuth"].to_numpy(), population["lat_heart_elevation"].to_numpy()
    )
    shifts = ELECTRODE_SHIFT_SD_SITES * z[:, 10:16]
    lifts = ELECTRODE_SHIFT_SD_SITES * z[:, 25:31]
    leads = lead_matrices(shifts, lifts)
    gain = np.exp(-HABITUS_DAMPING_PER_BMI * (bmi - 27.5) + TORSO_GAIN_SPREAD * z[:, 16])
    params = {
        "ecg_hr": hr, "ecg_rr": 1000.0 * rr, "ecg_pr": pr, "ecg_p_dur": p_dur,
        "ecg_qrs_dur": qrs, "ecg_qt": qt, "ecg_qtc": qtc, "ecg_p_amp": p_amp,
        "ecg_qrs_amp": qrs_amp, "ecg_lvm_force": lvm_force, "ecg_axis": axis,
        "ecg_t_amp": t_amp, "ecg_qrst_angle": qrst_angle, "ecg_lvedd": lvedd,
        "ecg_posterior": posterior, "ecg_torso_gain": gain,
        **{f"ecg_electrode_shift_V{k + 1}": shifts[:, k] for k in range(6)},
        **{f"ecg_electrode_lift_V{k + 1}": lifts[:, k] for k in range(6)},
    }  # fmt: skip
    for wave, vector in vectors.items():
        on_leads = gain[:, None] * _apply(leads, _apply(rotation, vector))
        for k, lead in enumerate(INDEPENDENT_LEADS):
            params[f"ecg_amp_{wave}_{lead}"] = on_leads[:, k]
    return pd.DataFrame(params)


def ecg_draws(seed: int, indices: np.ndarray, samples: int) -> dict[str, np.ndarray]:
    """Every random draw of the ECG of subjects `indices`; `samples` = 0 skips the white noise."""
    n = len(indices)
    draws = {
        "z": np.empty((n, N_NORMAL)),
        "u": np.empty((n, 4)),
        "rr_noise": np.empty((n, MAX_BEATS)),
        "wander": np.empty((n, len(ELECTRODES), 3, 3)),  # (amplitude, frequency, phase) x 3
        "emg": np.empty((n, len(ELECTRODES), samples), dtype=np.float32),
    }
    for row, index in enumerate(indices):
        rng = subject_rng(seed, index, ECG)
        draws["z"][row] = rng.standard_normal(N_NORMAL)
        draws["u"][row] = rng.random(4)
        draws["rr_noise"][row] = rng.standard_normal(MAX_BEATS)
        draws["wander"][row] = rng.random((len(ELECTRODES), 3, 3))
        if samples:
            draws["emg"][row] = rng.standard_normal((len(ELECTRODES), samples), dtype=np.float32)
    return draws


def noise_levels(draws: dict[str, np.ndarray], fs: float) -> pd.DataFrame:
    """`NOISE_COLUMNS`: muscle-noise SD, mains-hum and baseline-wander amplitudes (mV).

    Baseline wander: two respiratory-band sinusoids 0.1-0.4 Hz and one slow drift 0.02-0.1 Hz,
    up to 0.15 mV each; muscle noise white, 5-20 uV; 50 Hz mains hum up to 20 uV, only above
    100 Hz sampling (below, the recorder's anti-alias filter removes it). Amplitudes ASSUMED(ecg-noise), of
    the order of the MIT-BIH noise stress test records.
    """
    u = draws["u"]
    return pd.DataFrame({
        "ecg_emg_sigma": 0.005 + 0.015 * u[:, 2],
        "ecg_hum_amp": 0.02 * u[:, 3] if fs > 2 * MAINS_HZ else np.zeros(len(u)),
        "ecg_wander_amp": (0.15 * draws["wander"][..., 0]).sum(axis=-1).mean(axis=-1),
    })  # fmt: skip


def ecg_latents(population: pd.DataFrame, seed: int, fs: float) -> pd.DataFrame:
    """The latents of `simulate_ecg` without rendering the signal (cheap, for oracles)."""
    draws = ecg_draws(seed, population["lat_index"].to_numpy(), 0)
    return pd.concat([ecg_parameters(population, draws["z"]), noise_levels(draws, fs)], axis=1)


def simulate_ecg(
    population: pd.DataFrame, seed: int, fs: float, seconds: float
) -> tuple[np.ndarray, pd.DataFrame]:
    """12-lead ECGs (B, 12, T) float32 in mV, leads in `LEADS` order, and their parameters."""
    T = int(round(fs * seconds))
    draws = ecg_draws(seed, population["lat_index"].to_numpy(), T)
    params = ecg_parameters(population, draws["z"])
    ecg = render_ecg(params[list(SIGNAL_COLUMNS)], draws, fs, T)
    return ecg, pd.concat([params, noise_levels(draws, fs)], axis=1)


def render_ecg(signal: pd.DataFrame, draws: dict[str, np.ndarray], fs: float, T: int) -> np.ndarray:
    """The ECGs made from `SIGNAL_COLUMNS` and the random draws only (nothing else of a subject)."""
    n = len(signal)
    u, rr_noise, wander, emg = draws["u"], draws["rr_noise"], draws["wander"], draws["emg"]
    p = {c: signal[c].to_numpy() for c in SIGNAL_COLUMNS}
    t = np.arange(T) / fs  # s

    # Beat times: RR with respiratory sinus arrhythmia (0.25 Hz, 3%) and 1.5% beat-to-beat
    # jitter (ASSUMED(rr-variability), typical short-term resting variability).
    rr0 = p["ecg_rr"] / 1000.0
    onsets = np.empty((n, MAX_BEATS))
    for row in range(n):
        beat_t = -u[row, 0] * rr0[row] + np.arange(MAX_BEATS) * rr0[row]
        rsa = 0.03 * np.sin(2 * np.pi * 0.25 * beat_t + 2 * np.pi * u[row, 1])
        rr = rr0[row] * (1 + rsa + 0.015 * rr_noise[row])
        onsets[row] = -u[row, 0] * rr0[row] + np.concatenate([[0.0], np.cumsum(rr[:-1])])
    pr = p["ecg_pr"] / 1000.0
    starts = onsets - pr[:, None] - 0.06  # each beat owns the samples from just before its P wave
    tau = np.empty((n, T), dtype=np.float32)  # float32 from here on: ample for mV signals
    for row in range(n):
        k = np.clip(np.searchsorted(starts[row], t, side="right") - 1, 0, MAX_BEATS - 1)
        tau[row] = 1000.0 * (t - onsets[row, k])  # ms from this beat's QRS onset

    def f32(x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)[:, None]

    def gauss(center, sigma):
        return np.exp(np.float32(-0.5) * ((tau - f32(center)) / f32(sigma)) ** 2)

    d, qt = p["ecg_qrs_dur"], p["ecg_qt"]
    # Wave ends are where a wave has fallen to ~10% of its peak (2.15 SD of a Gaussian), the kind
    # of threshold a device delineates with, so nominal and measured durations agree.
    rise, fall = 0.17 * qt, 0.085 * qt
    t_peak = qt - 2.15 * fall
    t_sigma = np.where(tau < f32(t_peak), f32(rise), f32(fall))
    shapes = {
        "p": gauss(-pr * 1000 + p["ecg_p_dur"] / 2, p["ecg_p_dur"] / 4.3),
        "septal": gauss(0.18 * d, 0.07 * d),
        "main": gauss(0.45 * d, 0.11 * d),
        "terminal": gauss(0.75 * d, 0.08 * d),
        "t": np.exp(np.float32(-0.5) * ((tau - f32(t_peak)) / t_sigma) ** 2),
    }
    clean = np.zeros((n, len(INDEPENDENT_LEADS), T), dtype=np.float32)
    for wave, shape in shapes.items():
        for k, lead in enumerate(INDEPENDENT_LEADS):
            clean[:, k] += f32(p[f"ecg_amp_{wave}_{lead}"]) * shape

    # Electrode noise (magnitudes in `noise_levels`).
    amp = 0.15 * wander[..., 0]
    freq = np.concatenate(
        [0.1 + 0.3 * wander[..., :2, 1], 0.02 + 0.08 * wander[..., 2:, 1]], axis=-1
    )
    phase = 2 * np.pi * wander[..., 2]
    levels = noise_levels(draws, fs)
    emg_sigma, hum_amp = levels["ecg_emg_sigma"].to_numpy(), levels["ecg_hum_amp"].to_numpy()
    t32 = t.astype(np.float32)
    electrode = emg * emg_sigma.astype(np.float32)[:, None, None]  # (n, electrodes, T)
    for j in range(3):
        arg = (2 * np.pi * freq[..., j]).astype(np.float32)[..., None] * t32
        arg += phase[..., j].astype(np.float32)[..., None]
        electrode += amp[..., j].astype(np.float32)[..., None] * np.sin(arg)
    if fs > 2 * MAINS_HZ:  # sin(wt + phase) = sin(wt) cos(phase) + cos(wt) sin(phase)
        mains = 2 * np.pi * MAINS_HZ * t
        for weight, wave in ((np.cos, np.sin(mains)), (np.sin, np.cos(mains))):
            hum = (hum_amp[:, None] * weight(phase[..., 0])).astype(np.float32)
            electrode += hum[..., None] * wave.astype(np.float32)
    ra, la, ll = electrode[:, 0], electrode[:, 1], electrode[:, 2]
    wct = (ra + la + ll) / np.float32(3.0)  # Wilson central terminal
    lead_i = clean[:, 0] + la - ra
    lead_ii = clean[:, 1] + ll - ra
    ecg = np.empty((n, len(LEADS), T), dtype=np.float32)
    ecg[:, 0], ecg[:, 1] = lead_i, lead_ii
    ecg[:, 2] = lead_ii - lead_i
    ecg[:, 3] = -(lead_i + lead_ii) / np.float32(2)
    ecg[:, 4] = lead_i - lead_ii / np.float32(2)
    ecg[:, 5] = lead_ii - lead_i / np.float32(2)
    ecg[:, 6:] = clean[:, 2:] + electrode[:, 3:] - wct[:, None]
    return ecg
