"""Localizer (scout) images: three oblique-transverse slices through a thorax phantom.

The heart is caught at a random phase of the cycle (localizers are not ECG-gated), so its
chambers show one instantaneous volume: structural CPs (size, mass) are visible, ejection
fraction only weakly (through the covariation of volumes with EF, not through motion). The
slices are thick (10 mm), with position and tilt variation, a smooth bias field, motion blur
and Rician noise.

Two fields of view (`field`):
- "heart" (default): as the paper's preprocessing, which segments the heart and crops it from
  the thorax before resizing: a square of `fov_mm` (140 mm) centred on the heart as an automatic
  segmentation would place it (centring error `CENTRING_ERROR_MM` per axis). The pixel size is
  fixed (fov_mm / size), so the apparent heart size stays a measure of the real one.
- "thorax": the whole 360 mm scout, centred on the scanner's isocentre.

With every stack comes the heart's mask on the same pixels (`render_localizers_and_masks`):
the pixels at least half covered by a chamber or the LV myocardium on each slice, before blur
and noise. It is what the simulator knows and a reader of the image does not, e.g. to measure
how much of an attribution map falls on the heart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctrip.data.schema import CP_NAMES, LOCALIZER_FOV_MM
from ctrip.data.synth.anatomy import lv_shell, phase_volumes
from ctrip.data.synth.population import LOCALIZER, MYOCARDIAL_DENSITY, subject_rng

FOV_MM = 360.0  # the whole-thorax scout
HEART_FOV_MM = LOCALIZER_FOV_MM  # the heart-centred crop: an adult heart with a margin
# SD per axis of the crop centre around the true heart centre: the error of the bounding-box
# centre from an automatic heart segmentation (ASSUMED(centring-error), a few mm on
# 10 mm thick slices).
CENTRING_ERROR_MM = 5.0
FIELDS = ("heart", "thorax")
SLICE_SPACING_MM = 10.0  # consecutive slices, each 10 mm thick (UKB scouts are thick-sliced)
HEART_CENTER = (25.0, -30.0)  # mm: left of midline, anterior (x: patient left, y: posterior)
# bSSFP-like intensities (blood bright, fat bright, lung dark, myocardium grey).
INTENSITY = {"fat": 0.7, "muscle": 0.33, "lung": 0.05, "spine": 0.42, "canal": 0.75,
             "aorta": 0.85, "liver": 0.3, "blood": 0.9, "myocardium": 0.27}  # fmt: skip
STRUCTURES = ("lv_cavity", "lv_outer", "rv", "la", "ra")


def _heart_axes(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """(B, 3, 3) rows u (base to apex), v, w of the heart frame in body coordinates."""
    ca, sa, cb, sb = np.cos(azimuth), np.sin(azimuth), np.cos(elevation), np.sin(elevation)
    u = np.stack([sa * cb, -ca * cb, -sb], axis=-1)  # left-anterior-inferior apex
    v = np.stack([ca, sa, np.zeros_like(ca)], axis=-1)  # left-posterior
    w = np.cross(u, v)
    return np.stack([u, v, w], axis=1)


def _coverage(dist_norm: np.ndarray, radius: np.ndarray, edge_mm: np.ndarray) -> np.ndarray:
    """Partial-volume coverage from a normalized distance (1 on the surface), soft over `edge_mm`."""
    slope = radius / edge_mm  # 0.5 - (d - 1) slope as one multiply-add, clipped in place
    out = dist_norm * -slope
    out += 0.5 + slope
    return np.clip(out, 0.0, 1.0, out=out)


def _ellipsoid_cov(center, axes, semi, plane0, e1, e2, X, Y, edge):
    """Coverage (B, S, H, W) of 3-D ellipsoids (center (B,3), axes (B,3,3), semi (B,3)) on planes."""
    rel = plane0 - center[:, None, :]  # (B, S, 3)
    # Plane coefficients in float64, per-pixel work in float32 (twice as fast, ample precision).
    d0 = (np.einsum("bsi,bki->bsk", rel, axes) / semi[:, None, :]).astype(np.float32)
    d1 = (np.einsum("bi,bki->bk", e1, axes) / semi).astype(np.float32)
    d2 = (np.einsum("bi,bki->bk", e2, axes) / semi).astype(np.float32)
    q = sum(
        (d0[:, :, k, None, None] + d1[:, None, k, None, None] * X + d2[:, None, k, None, None] * Y)
        ** 2
        for k in range(3)
    )
    radius = np.sqrt(np.sort(semi, axis=1)[:, 1:].prod(axis=1))[:, None, None, None]
    return _coverage(np.sqrt(q), radius.astype(np.float32), edge)


def _ellipse_cov(cx, cy, ax, ay, X, Y, edge):
    """Coverage (B, 1, H, W) of in-plane ellipses (structures running through all slices)."""
    e = lambda a: np.asarray(a, dtype=np.float32).reshape(-1, 1, 1, 1)  # noqa: E731
    d = np.sqrt(((X - e(cx)) / e(ax)) ** 2 + ((Y - e(cy)) / e(ay)) ** 2)
    return _coverage(d, np.sqrt(e(ax) * e(ay)), edge)


def field_of_view_mm(field: str, fov_mm: float | None = None) -> float:
    """Side of the localizer's square field of view in mm (`fov_mm` overrides the field's own)."""
    if field not in FIELDS:
        raise ValueError(f"unknown localizer field {field!r}; expected one of {FIELDS}")
    fov = float(fov_mm) if fov_mm is not None else (HEART_FOV_MM if field == "heart" else FOV_MM)
    if not fov > 0:
        raise ValueError(f"the localizer field of view must be positive, got {fov} mm")
    return fov


def render_localizers(
    population: pd.DataFrame,
    seed: int,
    size: int,
    field: str = "heart",
    fov_mm: float | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Localizer stacks (B, 3, size, size) float32 in ~[0, 1] and their latent geometry.

    field: "heart" (a crop of `fov_mm`, default 140 mm, around the heart) or "thorax" (the
    whole 360 mm scout); the pixel size is fov_mm / size for every subject.
    """
    images, _, latents = render_localizers_and_masks(population, seed, size, field, fov_mm)
    return images, latents


def render_localizers_and_masks(
    population: pd.DataFrame,
    seed: int,
    size: int,
    field: str = "heart",
    fov_mm: float | None = None,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """As `render_localizers`, with the heart's masks: (images, masks, latents).

    masks: (B, 3, size, size) bool, on the images' pixels, True where a chamber or the LV
    myocardium covers at least half the pixel on that slice.
    """
    return _scout(population, seed, size, field, fov_mm, pixels=True)


def localizer_latents(
    population: pd.DataFrame,
    seed: int,
    size: int,
    field: str = "heart",
    fov_mm: float | None = None,
) -> pd.DataFrame:
    """The latents of `render_localizers` without its images, for the oracle's reference
    subjects: the same draws and geometry, and the chambers' per-slice areas from their coverage
    of the same pixel grid, with the body, blur, bias field and noise left out."""
    return _scout(population, seed, size, field, fov_mm, pixels=False)[2]


def _scout(
    population: pd.DataFrame,
    seed: int,
    size: int,
    field: str,
    fov_mm: float | None,
    pixels: bool,
) -> tuple[np.ndarray | None, np.ndarray | None, pd.DataFrame]:
    """(images, masks, latents) of `render_localizers_and_masks`; without `pixels`, only the
    latents (images and masks None)."""
    fov = field_of_view_mm(field, fov_mm)
    n = len(population)
    draws_u = np.empty((n, 8))
    draws_z = np.empty((n, 8))
    centring = np.empty((n, 2))
    noise = np.empty((n, 2, 3, size, size), dtype=np.float32)
    for row, index in enumerate(population["lat_index"].to_numpy()):
        rng = subject_rng(seed, index, LOCALIZER)
        draws_u[row], draws_z[row] = rng.random(8), rng.standard_normal(8)
        noise[row] = rng.standard_normal((2, 3, size, size), dtype=np.float32)
        centring[row] = rng.standard_normal(2)  # drawn last: the other draws stay as they were

    cps = {c: population[c].to_numpy(dtype=float) for c in CP_NAMES}
    phase = draws_u[:, 0]
    vols = phase_volumes(cps, phase)
    aspect = population["lat_lv_aspect"].to_numpy()
    r, c, t = lv_shell(vols["lv"], cps["LVEDV"], cps["LVM"], aspect)
    axes = _heart_axes(
        population["lat_heart_azimuth"].to_numpy(), population["lat_heart_elevation"].to_numpy()
    )
    u, v = axes[:, 0], axes[:, 1]
    lv_center = np.stack(
        [HEART_CENTER[0] + population["lat_heart_dx"].to_numpy(),
         HEART_CENTER[1] + population["lat_heart_dy"].to_numpy(), np.zeros(n)], axis=-1,
    )  # fmt: skip
    # RV: a flattened ellipsoid right-anterior of the LV (partly hidden behind the septum).
    c_rv = 0.45 * (c + t)
    a_rv = np.sqrt(3 * vols["rv"] * 1000 / (4 * np.pi * c_rv * 1.6))
    rv_center = lv_center - 0.05 * c[:, None] * u - (r + t + 0.3 * a_rv)[:, None] * v
    # Atria: spheres behind the base (LA left-posterior, RA right).
    r_la, r_ra = (np.cbrt(3 * vols[k] * 1000 / (4 * np.pi)) for k in ("la", "ra"))
    la_center = lv_center - (0.5 * c + 0.8 * r_la)[:, None] * u + 0.2 * r_la[:, None] * v
    ra_center = lv_center - (0.35 * c + 0.8 * r_ra)[:, None] * u - (r + t + 0.5 * r_ra)[:, None] * v

    # Slice planes: position and tilt vary from scan to scan.
    z0 = -5.0 + 8.0 * draws_z[:, 0]
    shift = 10.0 * draws_z[:, 1:3]
    tilt_x, tilt_y = np.deg2rad(6.0 * draws_z[:, 3]), np.deg2rad(6.0 * draws_z[:, 4])
    e1 = np.stack([np.cos(tilt_y), np.zeros(n), np.sin(tilt_y)], axis=-1)
    e2 = np.stack([np.zeros(n), np.cos(tilt_x), np.sin(tilt_x)], axis=-1)
    offsets = SLICE_SPACING_MM * np.array([-1.0, 0.0, 1.0])
    plane0 = np.zeros((n, 3, 3))
    plane0[:, :, 0], plane0[:, :, 1] = shift[:, :1], shift[:, 1:2]
    plane0[:, :, 2] = z0[:, None] + offsets

    # In-plane coordinates (mm) of each pixel: pixel (X, Y) of a slice is the body point
    # plane0 + X e1 + Y e2. The heart-centred crop is centred on the volume-weighted centre of
    # the chambers, projected on the middle slice, plus the segmentation's centring error.
    if field == "heart":
        weights = np.stack([vols["lv"] + cps["LVM"] / MYOCARDIAL_DENSITY, vols["rv"],
                            vols["la"], vols["ra"]], axis=-1)  # fmt: skip
        centres = np.stack([lv_center, rv_center, la_center, ra_center], axis=1)
        heart = (weights[..., None] * centres).sum(axis=1) / weights.sum(axis=1)[:, None]
        rel = heart - plane0[:, 1]
        crop_x = np.einsum("bi,bi->b", rel, e1) + CENTRING_ERROR_MM * centring[:, 0]
        crop_y = np.einsum("bi,bi->b", rel, e2) + CENTRING_ERROR_MM * centring[:, 1]
    else:
        crop_x, crop_y = np.zeros(n), np.zeros(n)
    pixel = fov / size
    grid = ((np.arange(size) + 0.5) * pixel - fov / 2).astype(np.float32)
    X = grid[None, None, None, :] + crop_x.astype(np.float32)[:, None, None, None]
    Y = grid[None, None, :, None] + crop_y.astype(np.float32)[:, None, None, None]
    edge = np.full((n, 1, 1, 1), max(pixel, 0.25 * SLICE_SPACING_MM), dtype=np.float32)

    # Body: chest width and depth grow with BMI, subcutaneous fat thicker with BMI
    # (ASSUMED(body-habitus)).
    ratio, shape = population["bmi"].to_numpy() / 27.5, population["lat_body_shape"].to_numpy()
    body_ax, body_ay = 155.0 * np.sqrt(ratio) * shape, 110.0 * ratio**0.6 / shape
    fat = np.clip(6.0 + 1.5 * (population["bmi"].to_numpy() - 20.0), 3.0, 40.0)
    latents = {
        "loc_phase": phase,
        "loc_v_lv": vols["lv"], "loc_v_rv": vols["rv"], "loc_v_la": vols["la"], "loc_v_ra": vols["ra"],
        "loc_v_myo": cps["LVM"] / MYOCARDIAL_DENSITY,
        "loc_lv_r": r, "loc_lv_c": c, "loc_lv_t": t,
        "loc_body_ax": body_ax, "loc_body_ay": body_ay, "loc_fat_mm": fat,
        "loc_slice_z0": z0, "loc_tilt_x": tilt_x, "loc_tilt_y": tilt_y,
        "loc_blur_mm": 8.0 * draws_u[:, 1], "loc_noise_sigma": 0.02 + 0.03 * draws_u[:, 3],
        "loc_shift_x": shift[:, 0], "loc_shift_y": shift[:, 1],
        "loc_crop_x": crop_x, "loc_crop_y": crop_y,
    }  # fmt: skip
    heart = {
        "rv": (rv_center, np.stack([c_rv, a_rv, 1.6 * a_rv], -1), "blood"),
        "ra": (ra_center, np.stack([r_ra] * 3, -1), "blood"),
        "la": (la_center, np.stack([r_la] * 3, -1), "blood"),
        # The half-spheroid LV of `lv_shell` drawn as a full ellipsoid of equal volume.
        "lv_outer": (lv_center, np.stack([(c + t) / 2, r + t, r + t], -1), "myocardium"),
        "lv_cavity": (lv_center, np.stack([c / 2, r, r], -1), "blood"),
    }
    areas = {}
    if pixels:
        img = _thorax(body_ax, body_ay, fat, shift, plane0, e1, e2, X, Y, edge)
        heart_cover = np.zeros_like(img)
    for name, (center, semi, tissue) in heart.items():
        cov = _ellipsoid_cov(center, axes, semi, plane0, e1, e2, X, Y, edge)
        areas[name] = cov.sum(axis=(2, 3)) * pixel**2  # mm2 per slice, before occlusion
        if pixels:
            img = img + cov * (INTENSITY[tissue] - img)
            np.maximum(heart_cover, cov, out=heart_cover)
    for name in STRUCTURES:
        for s in range(3):
            latents[f"loc_area_{name}_{s}"] = areas[name][:, s]
    if not pixels:
        return None, None, pd.DataFrame(latents)
    masks = heart_cover >= 0.5

    # Motion blur along a random direction (object-domain), then bias field and Rician noise.
    blur_mm = latents["loc_blur_mm"]
    blur_dir = 2 * np.pi * draws_u[:, 2]
    k = np.fft.fftfreq(size, d=pixel)  # motion blur is circular: it wraps at the crop edges
    kr = np.fft.rfftfreq(size, d=pixel)
    for row in range(n):  # one subject at a time: faster than one batched transform
        proj = np.cos(blur_dir[row]) * kr[None, :] + np.sin(blur_dir[row]) * k[:, None]
        transfer = np.sinc(blur_mm[row] * proj).astype(np.float32)
        img[row] = np.fft.irfft2(np.fft.rfft2(img[row]) * transfer, s=(size, size))
    xn, yn = X / np.float32(FOV_MM / 2), Y / np.float32(FOV_MM / 2)
    b = (0.2 * draws_z[:, 5:8, None, None, None]).astype(np.float32)
    bias = np.exp(b[:, 0] * xn + b[:, 1] * yn + b[:, 2] * (xn**2 + yn**2))
    img = img * bias
    s32 = latents["loc_noise_sigma"].astype(np.float32)[:, None, None, None]
    img = np.sqrt((img + s32 * noise[:, 0]) ** 2 + (s32 * noise[:, 1]) ** 2)
    scale = np.quantile(img.reshape(n, -1), 0.995, axis=1)[:, None, None, None]
    images = np.clip(img / scale, 0.0, 1.0).astype(np.float32)
    return images, masks, pd.DataFrame(latents)


def _thorax(body_ax, body_ay, fat, shift, plane0, e1, e2, X, Y, edge) -> np.ndarray:
    """(B, 3, H, W) intensities of the body around the heart: fat, muscle, lungs, spine, aorta
    and liver."""
    # Body coordinates of the pixels: structures running through all slices stay put in the
    # body, so they appear at -shift in the image, as the heart and liver (drawn through plane0).
    Xs = X + shift[:, 0, None, None, None].astype(np.float32)
    Ys = Y + shift[:, 1, None, None, None].astype(np.float32)
    img = INTENSITY["fat"] * _ellipse_cov(0, 0, body_ax, body_ay, Xs, Ys, edge)
    layers = [
        (_ellipse_cov(0, 0, body_ax - fat, body_ay - fat, Xs, Ys, edge), "muscle"),
        (_ellipse_cov(0.45 * body_ax, 0.05 * body_ay, 0.36 * body_ax, 0.62 * body_ay, Xs, Ys, edge), "lung"),
        (_ellipse_cov(-0.45 * body_ax, 0.05 * body_ay, 0.36 * body_ax, 0.62 * body_ay, Xs, Ys, edge), "lung"),
        (_ellipse_cov(0, 0.62 * body_ay, 17, 17, Xs, Ys, edge), "spine"),
        (_ellipse_cov(0, 0.62 * body_ay + 8, 6, 6, Xs, Ys, edge), "canal"),
        (_ellipse_cov(22, 0.62 * body_ay - 26, 12, 12, Xs, Ys, edge), "aorta"),
    ]  # fmt: skip
    for cov, tissue in layers:
        img = img + cov * (INTENSITY[tissue] - img)
    n = len(body_ax)
    liver_axes = np.broadcast_to(np.eye(3), (n, 3, 3))
    liver = _ellipsoid_cov(
        np.tile([-45.0, 0.0, -85.0], (n, 1)), liver_axes, np.tile([95.0, 85.0, 55.0], (n, 1)),
        plane0, e1, e2, X, Y, edge,
    )  # fmt: skip
    return img + liver * (INTENSITY["liver"] - img)
