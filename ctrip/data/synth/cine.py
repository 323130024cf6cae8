"""Cine CMR: the mid short-axis slice at end-diastole, end-systole and mid-systole.

The LV is a blood pool inside a myocardial ring whose area follows the ellipsoid shell of
`anatomy.lv_shell` (mass-conserving, so the wall is thicker at ES); the RV is a crescent wrapped
around the septum whose area follows the RV volume. Cine frames see both ED and ES, so they carry
ejection fraction directly; they see neither atrium (mid ventricular slice).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctrip.data.schema import CP_NAMES
from ctrip.data.synth.anatomy import lv_shell
from ctrip.data.synth.population import CMR, subject_rng

FOV_MM = 160.0  # field of view around the heart
FRAMES = ("ed", "es", "mid")
RV_WALL_MM = 3.5  # RV free wall thickness (normal < 5 mm)
INTENSITY = {"background": 0.5, "lung": 0.05, "blood": 0.9, "myocardium": 0.2}  # bSSFP-like


def _ring_cov(rho: np.ndarray, radius: np.ndarray, pixel: float) -> np.ndarray:
    return np.clip(np.float32(0.5) - (rho - radius) * np.float32(1 / pixel), 0.0, 1.0)


def render_cine(population: pd.DataFrame, seed: int, size: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Cine frames (B, 3, size, size) float32 (channels ED, ES, mid) and their latent geometry."""
    return _cine(population, seed, size, pixels=True)


def cine_latents(population: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The latents of `render_cine` without its frames (the geometry does not depend on the
    pixels), for the oracle's reference subjects."""
    return _cine(population, seed, 0, pixels=False)[1]


def _cine(
    population: pd.DataFrame, seed: int, size: int, pixels: bool
) -> tuple[np.ndarray | None, pd.DataFrame]:
    n = len(population)
    draws_u, draws_z = np.empty((n, 4)), np.empty((n, 6))
    noise = np.empty((n, 2, 3, size, size), dtype=np.float32)
    for row, index in enumerate(population["lat_index"].to_numpy()):
        rng = subject_rng(seed, index, CMR)
        draws_u[row], draws_z[row] = rng.random(4), rng.standard_normal(6)
        if pixels:  # the noise is drawn last: the other draws do not depend on it
            noise[row] = rng.standard_normal((2, 3, size, size), dtype=np.float32)
    cps = {c: population[c].to_numpy(dtype=float) for c in CP_NAMES}
    aspect = population["lat_lv_aspect"].to_numpy()
    lv = {"ed": cps["LVEDV"], "es": cps["LVESV"], "mid": 0.5 * (cps["LVEDV"] + cps["LVESV"])}
    rv = {"ed": cps["RVEDV"], "es": cps["RVESV"], "mid": 0.5 * (cps["RVEDV"] + cps["RVESV"])}
    cx, cy = 4.0 * draws_z[:, 0], 4.0 * draws_z[:, 1]
    rv_dir = np.pi + np.deg2rad(10.0 * draws_z[:, 2])  # RV on the image left (patient right)
    half = np.deg2rad(70.0 + 10.0 * draws_z[:, 3])  # crescent half-width: ASSUMED(heart-shape)
    _, c_ed, _ = lv_shell(cps["LVEDV"], cps["LVEDV"], cps["LVM"], aspect)

    latents, rings = {}, {}
    for name in FRAMES:
        r, c, t = lv_shell(lv[name], cps["LVEDV"], cps["LVM"], aspect)
        outer = r + t
        # Mid-slice RV cavity area from an ellipsoid-like chamber: A = 1.5 V / L, L ~ 0.9 LV length.
        area_rv = 1.5 * rv[name] * 1000.0 / (0.9 * c_ed)
        # Crescent w(theta) = w_max cos(pi/2 theta/half): area = 4 half R w/pi + half w^2 / 2.
        qa, qb = half / 2, 4 * half * outer / np.pi
        rings[name] = (r, outer, (-qb + np.sqrt(qb**2 + 4 * qa * area_rv)) / (2 * qa))
        latents.update({
            f"cmr_lv_area_{name}": np.pi * r**2, f"cmr_myo_area_{name}": np.pi * (outer**2 - r**2),
            f"cmr_rv_area_{name}": area_rv, f"cmr_wall_{name}": t, f"cmr_lv_c_{name}": c,
        })  # fmt: skip
    sigma = 0.015 + 0.02 * draws_u[:, 0]
    latents["cmr_noise_sigma"] = sigma
    latents.update(
        {"cmr_center_x": cx, "cmr_center_y": cy, "cmr_rv_dir": rv_dir, "cmr_rv_half": half}
    )
    if not pixels:
        return None, pd.DataFrame(latents)

    pixel = FOV_MM / size
    f32 = lambda a: np.asarray(a, dtype=np.float32).reshape(-1, 1, 1)  # noqa: E731  (B, 1, 1)
    # Per-pixel work in float32 (ample for image intensities, twice as fast as float64).
    grid = ((np.arange(size) + 0.5) * pixel - FOV_MM / 2).astype(np.float32)
    X = grid[None, None, :] - f32(cx)
    Y = grid[None, :, None] - f32(cy)
    rho = np.sqrt(X**2 + Y**2)
    pi = np.float32(np.pi)
    angle = np.remainder(np.arctan2(Y, X) - f32(rv_dir) + pi, 2 * pi) - pi  # in [-pi, pi)
    lung = np.clip(
        np.float32(0.5)
        - (np.sqrt(((X - 75) / np.float32(30)) ** 2 + ((Y + 10) / np.float32(60)) ** 2) - 1)
        * np.float32(30 / pixel),
        0,
        1,
    )
    inside = np.abs(angle) < f32(half)
    frames = []
    for name in FRAMES:
        r, outer, w_max = rings[name]
        width = f32(w_max) * np.cos(np.float32(np.pi / 2) * np.clip(angle / f32(half), -1, 1))
        img = INTENSITY["background"] + lung * (INTENSITY["lung"] - INTENSITY["background"])
        wall = np.where(np.abs(angle) < f32(half + 0.15), width + f32(outer + RV_WALL_MM), 0)
        for cov, tissue in (
            (_ring_cov(rho, wall, pixel), "myocardium"),
            (inside * _ring_cov(rho, width + f32(outer), pixel), "blood"),
            (_ring_cov(rho, f32(outer), pixel), "myocardium"),
            (_ring_cov(rho, f32(r), pixel), "blood"),
        ):
            img = img + cov * (INTENSITY[tissue] - img)
        frames.append(img)
    img = np.stack(frames, axis=1)
    s32 = sigma.astype(np.float32)[:, None, None, None]
    img = np.sqrt((img + s32 * noise[:, 0]) ** 2 + (s32 * noise[:, 1]) ** 2)
    scale = np.quantile(img.reshape(n, -1), 0.995, axis=1)[:, None, None, None]
    return np.clip(img / scale, 0.0, 1.0).astype(np.float32), pd.DataFrame(latents)
