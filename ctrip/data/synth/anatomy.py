"""Heart geometry from chamber volumes: cardiac-cycle volume curves and an LV ellipsoid shell.

The LV is a half prolate spheroid cavity, truncated at the base (short semi-axis r, base-to-apex
length c, volume 2/3 pi r^2 c), inside a myocardial shell of uniform thickness t whose volume LVM / 1.05 stays constant through the cycle, so the
wall thickens as the cavity empties (mass conservation).
"""

from __future__ import annotations

import numpy as np

from ctrip.data.synth.population import MYOCARDIAL_DENSITY

END_SYSTOLE_PHASE = 0.35  # fraction of the RR interval at which the ventricles are smallest
LONG_AXIS_EXPONENT = 0.15  # c ~ V**0.15: ~13% shortening at EF 60%: ASSUMED(heart-shape)


def ventricular_fill(phase: np.ndarray) -> np.ndarray:
    """Ventricular filling g(phase) in [0, 1]: 1 at end-diastole (phase 0), 0 at end-systole.

    Systole (cosine emptying) to 0.35 of the cycle, rapid filling to 80% by 0.55, diastasis,
    then the atrial kick over the last 15% (a textbook Wiggers-diagram shape).
    """
    p = np.mod(phase, 1.0)
    es = END_SYSTOLE_PHASE
    systole = 0.5 * (1 + np.cos(np.pi * p / es))
    rapid = 0.8 * 0.5 * (1 - np.cos(np.pi * np.clip((p - es) / (0.55 - es), 0, 1)))
    kick = 0.8 + 0.2 * 0.5 * (1 - np.cos(np.pi * np.clip((p - 0.85) / 0.15, 0, 1)))
    return np.where(p < es, systole, np.where(p < 0.85, rapid, kick))


def phase_volumes(cps: dict[str, np.ndarray], phase: np.ndarray) -> dict[str, np.ndarray]:
    """Chamber volumes (mL) at `phase`: ventricles between ESV and EDV, atria in counter-phase."""
    g = ventricular_fill(phase)
    return {
        "lv": cps["LVESV"] + (cps["LVEDV"] - cps["LVESV"]) * g,
        "rv": cps["RVESV"] + (cps["RVEDV"] - cps["RVESV"]) * g,
        "la": cps["LAVmin"] + (cps["LAVmax"] - cps["LAVmin"]) * (1 - g),
        "ra": cps["RAVmin"] + (cps["RAVmax"] - cps["RAVmin"]) * (1 - g),
    }


def lv_shell(
    cavity_ml: np.ndarray, edv_ml: np.ndarray, lvm_g: np.ndarray, aspect_ed: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LV short semi-axis r, base-apex length c and wall thickness t (mm) at a cavity volume.

    A uniform shell puts ~6 mm of wall around a women's average LV, close to the UK Biobank mean
    wall thickness from automated CMR analysis (Bai et al. 2020: ~5.5-6.5 mm).
    """
    volume = cavity_ml * 1000.0  # mm3
    r_ed = np.cbrt(3 * edv_ml * 1000.0 / (2 * np.pi * aspect_ed))
    c = aspect_ed * r_ed * (cavity_ml / edv_ml) ** LONG_AXIS_EXPONENT
    r = np.sqrt(3 * volume / (2 * np.pi * c))
    outer = r**2 * c + 3 * (lvm_g / MYOCARDIAL_DENSITY) * 1000.0 / (2 * np.pi)
    t = np.cbrt(outer) - np.cbrt(r**2 * c)  # start, then Newton on (r+t)^2 (c+t) = outer
    for _ in range(6):
        f = (r + t) ** 2 * (c + t) - outer
        df = 2 * (r + t) * (c + t) + (r + t) ** 2
        t = t - f / df
    return r, c, t


def lv_diameter_ed(cps: dict[str, np.ndarray], aspect_ed: np.ndarray) -> np.ndarray:
    """LV end-diastolic short-axis diameter (mm), used by the ECG's QRS-duration relation."""
    r, _, _ = lv_shell(cps["LVEDV"], cps["LVEDV"], cps["LVM"], aspect_ed)
    return 2 * r


def heart_frame(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """(B, 3, 3) rows: the heart's long axis (base to apex) and two short axes, in body axes.

    Body axes x (patient left), y (posterior), z (head). The apex points left, anterior and
    inferior: `azimuth` turns the long axis from anterior toward the left in the transverse
    plane, `elevation` tilts it below that plane.
    """
    ca, sa, cb, sb = np.cos(azimuth), np.sin(azimuth), np.cos(elevation), np.sin(elevation)
    u = np.stack([sa * cb, -ca * cb, -sb], axis=-1)
    v = np.stack([ca, sa, np.zeros_like(ca)], axis=-1)
    return np.stack([u, v, np.cross(u, v)], axis=1)
