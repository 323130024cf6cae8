"""12-lead ECG from a vectorcardiogram (VCG) projected through the Dower matrix.

Each beat is a sum of Gaussian waves in three Frank dimensions (x: patient left, y: feet,
z: back): a P wave, a QRS made of septal, main and terminal forces, and an asymmetric T wave.
Noise is added per electrode (RA, LA, LL, V1-V6) and the limb leads are formed from electrode
differences, so III = II - I, aVR = -(I + II)/2, aVL = I - II/2 and aVF = II - I/2 hold exactly
on the stored float32 values.

Sources (magnitudes):
- Dower et al. 1980 (J Electrocardiol 13:189), 12-lead-from-Frank matrix; as used by Edenbrandt
  & Pahlm 1988 and open ECG/VCG software (e.g. BRAVEHEART).
- DESIGN.md section 5: women HR 66 +- 9 bpm, PR 158 +- 34 ms, QRS 85 +- 8 ms, QTc 413 +- 14 ms;
  men's QRS 6-10 ms longer; QRS +5.4 ms and amplitude +0.08 mV per 100 g LV mass; QRS +4.6 ms per
  10 mm LV end-diastolic diameter.
- Framingham QT correction (Sagie et al. 1992): QT = QTc - 154 ms (1 - RR[s]).
- Sokolow-Lyon voltage vs CMR LV mass (index): r = 0.25 in healthy adults (Carlsson et al. 2006,
  J Electrocardiol 39:67), r = 0.28 in young men (LARGE Heart study, JCMR 2009, 11:2).
- Swiss conscripts (n = 41,806; Ann Noninvasive Electrocardiol 2009, 14:227): Sokolow-Lyon
  voltages 5-19% lower at BMI >= 25 than at 18.5-25, i.e. about -2% per kg/m2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctrip.data.schema import LEADS
from ctrip.data.synth.anatomy import lv_diameter_ed
from ctrip.data.synth.population import ECG, subject_rng

# Dower (1980): rows I, II, V1..V6; columns Frank X, Y, Z.
DOWER = np.array([
    [0.632, -0.235, 0.059], [0.235, 1.066, -0.132],
    [-0.515, 0.157, -0.917], [0.044, 0.164, -1.387], [0.882, 0.098, -1.277],
    [1.213, 0.127, -0.601], [1.125, 0.127, -0.086], [0.831, 0.076, 0.230],
])  # fmt: skip
ELECTRODES = ("RA", "LA", "LL", "V1", "V2", "V3", "V4", "V5", "V6")
MAINS_HZ = 50.0  # UK mains
MAX_BEATS = 32
REF_LVM_G, REF_LVEDD_MM = 78.0, 51.0  # women's cohort means, reference point of the slopes
LVM_FORCE_MV_PER_100G = 0.8  # posterior QRS force per 100 g LV mass (see `ecg_parameters`)
LVM_FORCE_DIR = (0.1, 0.0, 1.0)  # posterior, slightly leftward (Frank x, y, z)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def ecg_parameters(population: pd.DataFrame, z: np.ndarray) -> pd.DataFrame:
    """Generating parameters of each subject's ECG (durations in ms, amplitudes in mV)."""
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
    # P wave: longer and larger with LA size (direction established; slopes ASSUMED).
    p_dur = np.clip(100.0 + 0.25 * (lavmax - 64.0) + 10.0 * z[:, 0], 60.0, 170.0)
    p_amp = 0.12 * (1 + 0.004 * (lavmax - 64.0)) * np.exp(0.2 * z[:, 1])
    pr = np.clip((158.0 + 6.0 * male) * np.exp(0.2 * z[:, 2]), 100.0, 320.0)  # men +6 ms ASSUMED
    pr = np.maximum(pr, p_dur + 30.0)
    # QRS duration: DESIGN slopes for LV mass and diameter; the men's residual +4 ms brings the
    # total sex gap to ~8 ms; wide QRS with reduced EF (LBBB-like, ASSUMED up to +25 ms).
    qrs = 85.0 + 5.4 * (lvm - REF_LVM_G) / 100.0 + 4.6 * (lvedd - REF_LVEDD_MM) / 10.0
    qrs = np.clip(qrs + 4.0 * male + 25.0 * low_ef + 7.0 * z[:, 3], 60.0, 190.0)
    # QRS voltage. Two published figures describe it: DESIGN's +0.08 mV per 100 g LV mass and a
    # Sokolow-Lyon (SV1 + max RV5/RV6) correlation with LV mass index of only r ~ 0.3 (CMR:
    # Carlsson et al. 2006, J Electrocardiol 39:67, healthy adults, r = 0.25; LARGE Heart study,
    # JCMR 2009 11:2, young men, r = 0.28). Read as one slope of one amplitude they contradict
    # each other: 0.08 mV per 100 g (~0.03 mV per SD of LV mass) against a ~2 mV index with ~30%
    # between-person spread gives r < 0.05. They agree once the extra mass adds a QRS force of
    # its own pointing posteriorly, as in left-ventricular hypertrophy (deep S waves in V1-V3,
    # the leads whose S waves track LV mass best; limb-lead R waves barely do: Sokolow & Lyon
    # 1949, and a 2024 echo series, PMC10948226). The Dower matrix projects a posterior force
    # onto leads I and II at only 0.06 and 0.13 of its size, onto V1-V3 at 0.9-1.4. With 0.8 mV
    # per 100 g for that force the simulated Sokolow-Lyon vs LVMI correlation is ~0.3, while
    # limb-lead QRS amplitudes move by only a few hundredths of a mV per 100 g (adjusted for sex,
    # BMI and BSA), the order of DESIGN's 0.08 mV: the 0.8 is calibrated to the correlation.
    # Base spatial QRS amplitude 1.3 mV (typical Frank-lead magnitude, ASSUMED) with 18%
    # individual spread (ASSUMED: electrode placement, thorax conductivity; with the axis
    # variation it gives Sokolow-Lyon a between-person CV of ~35%, resting-ECG norms ~30%).
    # Body habitus damps every QRS force alike: -2% per BMI unit (Swiss conscripts).
    damping = np.exp(-0.02 * (bmi - 27.5))
    qrs_amp = 1.3 * damping * np.exp(0.18 * z[:, 4])
    lvm_force = LVM_FORCE_MV_PER_100G * (lvm - REF_LVM_G) / 100.0 * damping
    # Frontal QRS axis ~45 +- 25 deg, leftward with BMI (Kurisu et al. 2015). 0.5 deg per kg/m2 is
    # ASSUMED: a steeper shift turns the QRS toward V5-V6 enough to cancel the fall of Sokolow-Lyon
    # voltage with BMI that the Swiss conscripts show (5-19% lower at BMI >= 25; simulated ~5%).
    axis = np.deg2rad(45.0 - 0.5 * (bmi - 27.5) + 25.0 * z[:, 5])
    qtc = 413.0 - 8.0 * male + 14.0 * z[:, 6]  # men ~8 ms shorter (ASSUMED from AHA 2009 norms)
    qt = qtc - 154.0 * (1.0 - rr)  # Framingham
    # T wave: 0.35 mV (ASSUMED), spatial QRS-T angle ~40 deg; reduced EF flattens T and widens
    # the QRS-T angle (ASSUMED magnitude).
    t_amp = 0.35 * np.exp(0.25 * z[:, 7]) * (1 - 0.5 * low_ef)
    qrst_angle = np.deg2rad(40.0 + 15.0 * z[:, 8] + 90.0 * low_ef)
    return pd.DataFrame({
        "ecg_hr": hr, "ecg_rr": 1000.0 * rr, "ecg_pr": pr, "ecg_p_dur": p_dur, "ecg_p_amp": p_amp,
        "ecg_qrs_dur": qrs, "ecg_qrs_amp": qrs_amp, "ecg_lvm_force": lvm_force, "ecg_axis": axis,
        "ecg_qtc": qtc, "ecg_qt": qt,
        "ecg_t_amp": t_amp, "ecg_qrst_angle": qrst_angle, "ecg_lvedd": lvedd,
        "ecg_posterior": 0.5 + 0.2 * z[:, 9],
    })  # fmt: skip


def simulate_ecg(
    population: pd.DataFrame, seed: int, fs: float, seconds: float
) -> tuple[np.ndarray, pd.DataFrame]:
    """12-lead ECGs (B, 12, T) float32 in mV, leads in `LEADS` order, and their parameters."""
    n, T = len(population), int(round(fs * seconds))
    z = np.empty((n, 16))
    u = np.empty((n, 4))
    rr_noise = np.empty((n, MAX_BEATS))
    wander = np.empty((n, len(ELECTRODES), 3, 3))  # (amplitude, frequency, phase) x 3 sinusoids
    emg = np.empty((n, len(ELECTRODES), T), dtype=np.float32)
    for row, index in enumerate(population["lat_index"].to_numpy()):
        rng = subject_rng(seed, index, ECG)
        z[row], u[row], rr_noise[row] = (
            rng.standard_normal(16),
            rng.random(4),
            rng.standard_normal(MAX_BEATS),
        )
        wander[row] = rng.random((len(ELECTRODES), 3, 3))
        emg[row] = rng.standard_normal((len(ELECTRODES), T), dtype=np.float32)
    params = ecg_parameters(population, z)
    t = np.arange(T) / fs  # s

    # Beat times: RR with respiratory sinus arrhythmia (0.25 Hz, 3%) and 1.5% beat-to-beat
    # jitter (ASSUMED, typical short-term resting variability).
    rr0 = params["ecg_rr"].to_numpy() / 1000.0
    onsets = np.empty((n, MAX_BEATS))
    for row in range(n):
        beat_t = -u[row, 0] * rr0[row] + np.arange(MAX_BEATS) * rr0[row]
        rsa = 0.03 * np.sin(2 * np.pi * 0.25 * beat_t + 2 * np.pi * u[row, 1])
        rr = rr0[row] * (1 + rsa + 0.015 * rr_noise[row])
        onsets[row] = -u[row, 0] * rr0[row] + np.concatenate([[0.0], np.cumsum(rr[:-1])])
    pr = params["ecg_pr"].to_numpy() / 1000.0
    starts = onsets - pr[:, None] - 0.06  # each beat owns the samples from just before its P wave
    tau = np.empty((n, T), dtype=np.float32)  # float32 from here on: ample for mV signals
    for row in range(n):
        k = np.clip(np.searchsorted(starts[row], t, side="right") - 1, 0, MAX_BEATS - 1)
        tau[row] = 1000.0 * (t - onsets[row, k])  # ms from this beat's QRS onset

    def f32(x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)[:, None]

    def gauss(center, sigma):
        return np.exp(np.float32(-0.5) * ((tau - f32(center)) / f32(sigma)) ** 2)

    p = {c: params[c].to_numpy() for c in params.columns}
    axis = p["ecg_axis"]
    r_dir = _unit(np.stack([np.cos(axis), np.sin(axis), p["ecg_posterior"]], axis=-1))
    septal = _unit(np.tile([-0.6, 0.2, -0.7], (n, 1)))  # rightward, anterior (Frank z is back)
    terminal = _unit(np.tile([-0.5, -0.6, 0.6], (n, 1)))  # rightward, superior, posterior
    p_dir = _unit(np.tile([0.6, 0.75, 0.1], (n, 1)))  # left, inferior
    lvm_dir = _unit(np.tile(LVM_FORCE_DIR, (n, 1)))
    ang = p["ecg_qrst_angle"]  # rotate the T vector from the QRS vector toward anterior
    t_dir = _unit(
        np.cos(ang)[:, None] * r_dir
        + np.sin(ang)[:, None] * _unit(np.cross([0.0, 1.0, 0.0], r_dir))
    )
    d, qt = p["ecg_qrs_dur"], p["ecg_qt"]
    # Wave ends are where a wave has fallen to ~10% of its peak (2.15 SD of a Gaussian), the kind
    # of threshold a device delineates with, so nominal and measured durations agree.
    rise, fall = 0.17 * qt, 0.085 * qt
    t_peak = qt - 2.15 * fall
    t_sigma = np.where(tau < f32(t_peak), f32(rise), f32(fall))
    waves = [
        (p_dir * p["ecg_p_amp"][:, None], gauss(-pr * 1000 + p["ecg_p_dur"] / 2, p["ecg_p_dur"] / 4.3)),
        (septal * 0.15 * p["ecg_qrs_amp"][:, None], gauss(0.18 * d, 0.07 * d)),
        (r_dir * p["ecg_qrs_amp"][:, None] + lvm_dir * p["ecg_lvm_force"][:, None],
         gauss(0.45 * d, 0.11 * d)),
        (terminal * 0.3 * p["ecg_qrs_amp"][:, None], gauss(0.75 * d, 0.08 * d)),
        (t_dir * p["ecg_t_amp"][:, None],
         np.exp(np.float32(-0.5) * ((tau - f32(t_peak)) / t_sigma) ** 2)),
    ]  # fmt: skip
    # Each wave's VCG vector projected to the 8 independent leads (I, II, V1-V6) at once (no
    # BLAS: elementwise sums give each subject the same bits whatever its chunk).
    clean = np.zeros((n, 8, T), dtype=np.float32)
    for vec, shape in waves:
        on_leads = sum(vec[:, j, None] * DOWER[None, :, j] for j in range(3))
        clean += on_leads.astype(np.float32)[:, :, None] * shape[:, None, :]

    # Electrode noise: baseline wander (two respiratory-band sinusoids 0.1-0.4 Hz and one slow
    # drift 0.02-0.1 Hz, up to 0.15 mV each), muscle noise (white, 5-20 uV) and 50 Hz mains hum
    # (up to 20 uV; only above 100 Hz sampling, below that the recorder's anti-alias filter
    # removes it). Amplitudes ASSUMED, of the order of the MIT-BIH noise stress test records.
    amp = 0.15 * wander[..., 0]
    freq = np.concatenate(
        [0.1 + 0.3 * wander[..., :2, 1], 0.02 + 0.08 * wander[..., 2:, 1]], axis=-1
    )
    phase = 2 * np.pi * wander[..., 2]
    emg_sigma = 0.005 + 0.015 * u[:, 2]
    hum_amp = 0.02 * u[:, 3] if fs > 2 * MAINS_HZ else np.zeros(n)
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
    params["ecg_emg_sigma"] = emg_sigma
    params["ecg_hum_amp"] = hum_amp
    params["ecg_wander_amp"] = amp.sum(axis=-1).mean(axis=-1)
    return ecg, params
