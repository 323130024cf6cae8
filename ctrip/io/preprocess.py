"""Images to model input, as in the paper: crop around the heart, normalize, resize.

Localizer: three consecutive transverse slices become the three channels, cropped to a square
of fixed physical size `crop_mm` (default `LOCALIZER_FOV_MM`, 140 mm: an adult heart with a
margin) and resized, so every subject has the same mm per pixel and the apparent heart size
measures the real one (the synthetic cohort renders the same field of view). With a heart mask
(same shape as the slice stack) the centre slice is the one with most heart pixels and the crop
is centred on the mask's bounding box on those slices; with a `HeartBox` it is centred on the
box (on its slice, if given). Without either the crop is centred on the image, on the middle
three slices, and a `CentredCropWarning` says the heart position was guessed.

Cine: the mid slice of the short-axis stack (index Z // 2 in basal-to-apical order) at end-
diastole, end-systole and mid-phase. ED and ES are the frames of largest and smallest LV
blood pool in a given mask (label `lv_label`), or given indices. Without either, ED is frame 0
(cine acquisitions are triggered on the R wave) and ES the frame that differs most from it in
the central crop, with a warning. Mid-phase is the frame half a cycle after ED.

Cine crops follow the box itself (enlarged by 20%) when a mask or box is given. Every crop is
square in millimetres (pixel spacing permitting), intensities are scaled so the
1st and 99th percentiles of the three channels map to 0 and 1 (clipped), and the result is
resized to `size` x `size` (bilinear, Gaussian anti-aliasing when shrinking).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ctrip.data.schema import LOCALIZER_FOV_MM
from ctrip.io.errors import GeometryError
from ctrip.io.images import CineStack, SliceStack

DEFAULT_CROP_MM = LOCALIZER_FOV_MM
BOX_MARGIN = 1.2  # the crop is the heart box enlarged by 20%, made square
PERCENTILES = (1.0, 99.0)
MIN_IMAGE_SIDE = 16  # pixels: a smaller slice carries no heart to crop (1x1, 2x2 "images")
MAX_CROP_PIXELS = 4096  # the crop's side before resizing; the largest image size a cohort takes


class CentredCropWarning(UserWarning):
    """No heart mask or box was given: the crop (and the frames) were placed by default."""


class CropGeometryWarning(UserWarning):
    """The localizer crop cannot keep the fixed field of view: unknown pixel spacing, or a
    heart box larger than the crop."""


def expected_localizer_input(size: int, crop_mm: float = LOCALIZER_FOV_MM) -> str:
    """One line saying what a localizer model input is (for `ctrip predict` and the docs)."""
    return (
        f"three consecutive transverse localizer slices, a {crop_mm:g} mm square centred on the "
        f"heart, resized to {size}x{size} pixels ({crop_mm / size:.2f} mm per pixel)"
    )


def localizer_field_of_view_mm(manifest: dict) -> float:
    """The localizer field of view (mm) a cohort was made with, from its manifest: the
    simulator's recipe or the importer's preprocessing settings (`LOCALIZER_FOV_MM` if neither
    says; cohorts made before the field was recorded). A field of another type or a size
    outside 10-2000 mm is a `ValueError` naming the field."""
    for path in (("recipe", "localizer", "field_of_view_mm"), ("provenance", "preprocessing", "crop_mm")):  # fmt: skip
        value: Any = manifest
        for depth, key in enumerate(path):
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"field {'.'.join(path[:depth])} is not a mapping")
            value = (value or {}).get(key)
        if value:
            size = float(value) if isinstance(value, int | float) else float("nan")
            if not 10.0 <= size <= 2000.0:  # also NaN, text, a list
                raise ValueError(f"field {'.'.join(path)} is {value!r}, not a size of 10-2000 mm")
            return size
    return LOCALIZER_FOV_MM


@dataclass(frozen=True)
class HeartBox:
    """A box around the heart in pixel coordinates of a slice (rows r0:r1, columns c0:c1);
    `slice` (optional) is the centre slice of the three (localizer) or None."""

    r0: int
    c0: int
    r1: int
    c1: int
    slice: int | None = None

    @classmethod
    def parse(cls, text: str) -> HeartBox:
        """From "r0,c0,r1,c1" or "r0,c0,r1,c1,slice"."""
        try:
            values = [int(v) for v in text.split(",")]
        except ValueError as err:
            raise ValueError(f"heart box {text!r}: expected integers r0,c0,r1,c1[,slice]") from err
        if len(values) not in (4, 5) or values[2] <= values[0] or values[3] <= values[1]:
            raise ValueError(f"heart box {text!r}: expected r0,c0,r1,c1[,slice] with r1>r0, c1>c0")
        return cls(*values)


def normalize_intensity(image: np.ndarray) -> np.ndarray:
    """Scale so the 1st/99th percentiles map to 0/1, clipped; a blank image is an error. NaN
    marks padding outside the scanned field: it is left out of the percentiles and set to 0."""
    low, high = np.nanpercentile(image, PERCENTILES) if np.isfinite(image).any() else (0, 0)
    if not high > low:
        raise GeometryError("the cropped image is blank (constant intensity)")
    scaled = np.clip((image - low) / (high - low), 0.0, 1.0)
    return np.nan_to_num(scaled, nan=0.0).astype(np.float32)  # padding (NaN) becomes 0


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize the last two axes to (size, size): bilinear, anti-aliased when shrinking."""
    factors = np.array([size / image.shape[-2], size / image.shape[-1]])
    lead = (1.0,) * (image.ndim - 2)
    sigma = np.maximum(0.0, (1.0 / factors - 1.0) / 2.0)
    if sigma.any():
        image = ndimage.gaussian_filter(image, (0.0,) * (image.ndim - 2) + tuple(sigma))
    out = ndimage.zoom(image, lead + tuple(factors), order=1, mode="nearest", grid_mode=True)
    return out.astype(np.float32)


def square_crop(
    images: np.ndarray,
    centre: tuple[float, float],
    side_mm: float,
    spacing: tuple[float, float] | None,
) -> np.ndarray:
    """Crop (C, H, W) to a square of `side_mm` (pixels if spacing is unknown) around `centre`;
    parts outside the image are NaN (float32), so that `normalize_intensity` leaves them out."""
    row_mm, col_mm = spacing or (1.0, 1.0)
    half = (max(1, round(side_mm / row_mm / 2)), max(1, round(side_mm / col_mm / 2)))
    corners = [round(c) - h for c, h in zip(centre, half)]
    pad = max(
        0, -min(corners), *(c + 2 * h - n for c, h, n in zip(corners, half, images.shape[-2:]))
    )
    if pad:
        images = np.pad(images.astype(np.float32), ((0, 0), (pad, pad), (pad, pad)),
                        constant_values=np.nan)  # fmt: skip
    padded = images
    r, c = corners[0] + pad, corners[1] + pad
    return padded[:, r : r + 2 * half[0], c : c + 2 * half[1]]


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask.any(axis=0) if mask.ndim == 3 else mask)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def _fixed_crop(
    images: np.ndarray, box: tuple[int, int, int, int], spacing, crop_mm: float, source: str
) -> np.ndarray:
    """A square of `crop_mm` centred on the box; warns when the box does not fit inside it."""
    r0, c0, r1, c1 = box
    row_mm, col_mm = spacing or (1.0, 1.0)
    if max((r1 - r0) * row_mm, (c1 - c0) * col_mm) > crop_mm:
        warnings.warn(
            f"{source}: the heart box ({(r1 - r0) * row_mm:.0f} x {(c1 - c0) * col_mm:.0f} mm) is "
            f"larger than the {crop_mm:g} mm field of view; the crop cuts the heart",
            CropGeometryWarning,
            stacklevel=3,
        )
    return square_crop(images, ((r0 + r1) / 2, (c0 + c1) / 2), crop_mm, spacing)


def _box_crop(images: np.ndarray, box: tuple[int, int, int, int], spacing) -> np.ndarray:
    r0, c0, r1, c1 = box
    row_mm, col_mm = spacing or (1.0, 1.0)
    side_mm = BOX_MARGIN * max((r1 - r0) * row_mm, (c1 - c0) * col_mm)
    return square_crop(images, ((r0 + r1) / 2, (c0 + c1) / 2), side_mm, spacing)


def _centred_side_mm(shape: tuple[int, int], spacing, crop_mm: float) -> float:
    if spacing is None:
        return float(min(shape))  # unknown pixel size: the largest centred square
    return min(crop_mm, shape[0] * spacing[0], shape[1] * spacing[1])


def three_slices(n_slices: int, centre: int | None, source: str) -> np.ndarray:
    """Indices of three consecutive slices around `centre` (default: the middle of the stack)."""
    if n_slices < 3:
        raise GeometryError(
            f"{source}: {n_slices} transverse slice(s); three consecutive are needed"
        )
    centre = n_slices // 2 if centre is None else centre
    if not 0 <= centre < n_slices:
        raise GeometryError(f"{source}: slice {centre} is outside the stack of {n_slices}")
    centre = min(max(centre, 1), n_slices - 2)
    return np.arange(centre - 1, centre + 2)


def check_pixels(pixels: np.ndarray, source: str) -> None:
    """Refuse images too small to hold a heart, and NaN or infinite pixels, naming `source`."""
    if pixels.ndim < 2 or min(pixels.shape[-2:]) < MIN_IMAGE_SIDE:
        raise GeometryError(
            f"{source}: images of {list(pixels.shape[-2:])} pixels; at least "
            f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} are needed"
        )
    if not np.isfinite(pixels).all():
        where = np.argwhere(~np.isfinite(pixels))[0].tolist()
        raise GeometryError(f"{source}: the image holds NaN or infinite pixels (first at {where})")


def _normalized(crop: np.ndarray, source: str) -> np.ndarray:
    try:
        return normalize_intensity(crop)
    except GeometryError as err:
        raise GeometryError(f"{source}: {err}") from err


def localizer_input(
    stack: SliceStack,
    size: int,
    mask: np.ndarray | None = None,
    box: HeartBox | None = None,
    crop_mm: float = DEFAULT_CROP_MM,
) -> np.ndarray:
    """Three consecutive transverse slices, a `crop_mm` square around the heart, resized:
    (3, size, size) in [0, 1] at crop_mm / size mm per pixel."""
    pixels = stack.pixels
    check_pixels(pixels, stack.source)
    side = crop_mm / min(stack.spacing or (1.0, 1.0))
    if not side <= MAX_CROP_PIXELS:  # checked before the crop's padding is allocated
        raise GeometryError(
            f"{stack.source}: a {crop_mm:g} mm crop at {stack.spacing or 1} mm per pixel is "
            f"{side:.0f} pixels wide, above {MAX_CROP_PIXELS}; refused"
        )
    if stack.spacing is None:
        warnings.warn(
            f"{stack.source}: unknown pixel spacing; the {crop_mm:g} mm crop is taken as "
            f"{crop_mm:g} pixels, so the field of view may differ from the model's",
            CropGeometryWarning,
            stacklevel=2,
        )
    if mask is not None:
        mask = np.asarray(mask) > 0
        if mask.shape != pixels.shape:
            raise GeometryError(
                f"{stack.source}: the heart mask is {mask.shape}, the localizer {pixels.shape}"
            )
        if not mask.any():
            raise GeometryError(f"{stack.source}: the heart mask is empty")
        chosen = three_slices(len(pixels), int(mask.sum(axis=(1, 2)).argmax()), stack.source)
        box_px = _box_of(mask[chosen])
        crop = _fixed_crop(pixels[chosen], box_px, stack.spacing, crop_mm, stack.source)
    elif box is not None:
        chosen = three_slices(len(pixels), box.slice, stack.source)
        box_px = (box.r0, box.c0, box.r1, box.c1)
        crop = _fixed_crop(pixels[chosen], box_px, stack.spacing, crop_mm, stack.source)
    else:
        chosen = three_slices(len(pixels), None, stack.source)
        warnings.warn(
            f"{stack.source}: no heart mask or box; using the middle three slices and a centred "
            "crop",
            CentredCropWarning,
            stacklevel=2,
        )
        height, width = pixels.shape[1:]
        crop = square_crop(pixels[chosen], (height / 2, width / 2), crop_mm, stack.spacing)
    if stack.positions is not None:
        gaps = np.abs(np.diff(stack.positions[chosen]))
        if gaps.max() > 1.5 * gaps.min():
            raise GeometryError(
                f"{stack.source}: slices {chosen.tolist()} are not consecutive (gaps of "
                f"{gaps[0]:.2f} and {gaps[1]:.2f} mm)"
            )
    return resize(_normalized(crop, stack.source), size)


def cardiac_frames(
    frames: np.ndarray,
    mask: np.ndarray | None = None,
    indices: tuple[int, int] | None = None,
    lv_label: int = 1,
    source: str = "",
) -> tuple[int, int, int]:
    """(ED, ES, mid) frame indices of one cine slice (T, H, W); see the module docstring."""
    n_frames = frames.shape[0]
    if n_frames < 3:
        raise GeometryError(f"{source}: the cine has {n_frames} frame(s); ED, ES and mid need 3")
    if indices is not None:
        ed, es = (int(i) for i in indices)
    elif mask is not None:
        area = (np.asarray(mask) == lv_label).sum(axis=(1, 2))
        if not area.any():
            raise GeometryError(f"{source}: the cine mask has no LV blood pool (label {lv_label})")
        ed, es = int(area.argmax()), int(area.argmin())
    else:
        warnings.warn(
            f"{source}: no mask or ED/ES indices; ED = frame 0, ES = the frame most unlike it",
            CentredCropWarning,
            stacklevel=2,
        )
        height, width = frames.shape[1:]
        centre = frames[:, height // 4 : height - height // 4, width // 4 : width - width // 4]
        ed = 0
        es = int(((centre - centre[0]) ** 2).mean(axis=(1, 2)).argmax())
    for name, index in (("ED", ed), ("ES", es)):
        if not 0 <= index < n_frames:
            raise GeometryError(f"{source}: {name} frame {index} is outside the {n_frames} frames")
    if ed == es:
        raise GeometryError(f"{source}: ED and ES are the same frame ({ed})")
    return ed, es, (ed + n_frames // 2) % n_frames


def cine_input(
    cine: CineStack,
    size: int,
    mask: np.ndarray | None = None,
    frames: tuple[int, int] | None = None,
    box: HeartBox | None = None,
    crop_mm: float = DEFAULT_CROP_MM,
    lv_label: int = 1,
) -> np.ndarray:
    """ED, ES and mid-phase of the mid short-axis slice: (3, size, size) in [0, 1]."""
    check_pixels(cine.pixels, cine.source)
    n_slices = cine.pixels.shape[0]
    mid = n_slices // 2
    slice_frames = cine.pixels[mid]
    slice_mask = None
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape not in (cine.pixels.shape, slice_frames.shape):
            raise GeometryError(
                f"{cine.source}: the cine mask is {mask.shape}; expected {cine.pixels.shape} "
                f"or {slice_frames.shape} (the mid slice)"
            )
        slice_mask = mask[mid] if mask.shape == cine.pixels.shape else mask
    chosen = list(cardiac_frames(slice_frames, slice_mask, frames, lv_label, cine.source))
    images = slice_frames[chosen]
    if slice_mask is not None and (slice_mask > 0).any():
        crop = _box_crop(images, _box_of(slice_mask > 0), cine.spacing)
    elif box is not None:
        crop = _box_crop(images, (box.r0, box.c0, box.r1, box.c1), cine.spacing)
    else:
        height, width = images.shape[1:]
        side = _centred_side_mm((height, width), cine.spacing, crop_mm)
        crop = square_crop(images, (height / 2, width / 2), side, cine.spacing)
    return resize(_normalized(crop, cine.source), size)
