"""The simulated localizer's field of view: a heart-centred crop of fixed physical size."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ctrip.data.cohort import Cohort
from ctrip.data.schema import LOCALIZER_FOV_MM
from ctrip.data.synth.generate import synthesize_cohort
from ctrip.data.synth.localizer import FOV_MM, render_localizers, render_localizers_and_masks
from ctrip.data.synth.population import sample_population
from ctrip.data.synth.sizes import SynthSizes
from ctrip.io.preprocess import localizer_field_of_view_mm

CHAMBERS = ("lv_outer", "rv", "la", "ra")


@pytest.fixture(scope="module")
def population():
    return sample_population(3, np.arange(64))


def chamber_area(latents, name: str) -> np.ndarray:
    return latents[[f"loc_area_{name}_{s}" for s in range(3)]].to_numpy().sum(axis=1)


def test_heart_crop_keeps_the_heart_inside_the_field_of_view(population):
    """The ventricles seen in the 140 mm crop are (almost) all of what the whole-thorax scout
    shows of them; the atria, behind the base, may lose an edge."""
    _, thorax = render_localizers(population, 3, 128, "thorax")
    _, heart = render_localizers(population, 3, 128, "heart")
    for name in CHAMBERS:
        seen, whole = chamber_area(heart, name), chamber_area(thorax, name)
        assert (seen <= whole * 1.02 + 1.0).all()  # a crop cannot show more
        kept = seen[whole > 100] / whole[whole > 100]
        assert np.median(kept) > 0.99
        assert kept.min() > (0.9 if name in ("lv_outer", "rv") else 0.5)
    # centring error: the crop centre is near, not on, the projected heart centre
    offset = np.hypot(heart["loc_crop_x"] - 25.0, heart["loc_crop_y"] + 30.0)
    assert offset.max() < 70.0 and offset.std() > 1.0


def test_heart_crop_has_a_constant_pixel_size_so_bigger_hearts_look_bigger(population):
    images, latents = render_localizers(population, 3, 64, "heart")
    assert images.shape == (64, 3, 64, 64) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    # the share of bright (blood) pixels follows the blood pools' cross-sections in mm2: with
    # a heart-sized crop every heart would fill the frame alike
    bright = (images > 0.6).mean(axis=(1, 2, 3))
    blood = sum(chamber_area(latents, name) for name in ("lv_cavity", "rv", "la", "ra"))
    assert np.corrcoef(bright, blood)[0, 1] > 0.8
    # one subject rendered alone or among others: the same image (no per-batch rescaling)
    alone, _ = render_localizers(population.iloc[5:6], 3, 64, "heart")
    np.testing.assert_allclose(alone[0], images[5], atol=1e-5)


def test_field_of_view_options(population):
    with pytest.raises(ValueError, match="field"):
        render_localizers(population.iloc[:2], 0, 32, "abdomen")
    with pytest.raises(ValueError, match="positive"):
        render_localizers(population.iloc[:2], 0, 32, "heart", fov_mm=0.0)
    thorax, lat = render_localizers(population.iloc[:4], 0, 32, "thorax")
    assert (lat["loc_crop_x"] == 0).all() and thorax.shape == (4, 3, 32, 32)


def test_the_body_moves_against_the_slice_shift_like_the_heart(population):
    """Pixel (X, Y) of a slice is the body point shift + (X, Y): every structure fixed in the
    body, the thorax as the heart, appears at -shift, so the heart keeps its place in the chest."""
    images, lat = render_localizers(population, 3, 128, "thorax")
    grid = (np.arange(128) + 0.5) * FOV_MM / 128 - FOV_MM / 2
    body = images[:, 1] > 0.2
    centroid_x = (body * grid[None, None, :]).sum(axis=(1, 2)) / body.sum(axis=(1, 2))
    centroid_y = (body * grid[None, :, None]).sum(axis=(1, 2)) / body.sum(axis=(1, 2))
    assert np.corrcoef(centroid_x, lat["loc_shift_x"])[0, 1] < -0.9
    assert np.corrcoef(centroid_y, lat["loc_shift_y"])[0, 1] < -0.7
    assert np.abs(centroid_x + lat["loc_shift_x"]).max() < 10.0


def test_cohort_manifest_records_the_field_of_view(tmp_path):
    sizes = dataclasses.replace(SynthSizes.for_profile("smoke"), image_size=32)
    path = synthesize_cohort(tmp_path / "c", 6, 0, sizes, progress=False)
    manifest = Cohort.open(path).manifest
    entry = manifest["recipe"]["localizer"]
    assert entry["field"] == "heart" and entry["field_of_view_mm"] == LOCALIZER_FOV_MM
    assert entry["mm_per_pixel"] == pytest.approx(LOCALIZER_FOV_MM / 32)
    assert localizer_field_of_view_mm(manifest) == LOCALIZER_FOV_MM
    thorax = dataclasses.replace(sizes, localizer_field="thorax", localizer_fov_mm=None)
    path = synthesize_cohort(tmp_path / "t", 6, 0, thorax, progress=False)
    assert localizer_field_of_view_mm(Cohort.open(path).manifest) == FOV_MM


def test_heart_mask_lies_on_the_heart_of_the_image(population):
    """The mask marks the chambers' cross-sections on the image's own pixels: its area is the
    chambers' area (overlaps counted once), it sits at the crop's centre, it is a small part of
    the whole-thorax scout, and the pixels it marks are the heart's, not the body wall's."""
    size = 64
    images, masks, latents = render_localizers_and_masks(population, 3, size, "heart")
    assert masks.shape == images.shape and masks.dtype == bool
    plain, _ = render_localizers(population, 3, size, "heart")
    np.testing.assert_array_equal(images, plain)  # the mask changes no image
    pixel_mm2 = (LOCALIZER_FOV_MM / size) ** 2
    area = masks.sum(axis=(2, 3)) * pixel_mm2
    chambers = sum(latents[[f"loc_area_{n}_{s}" for s in range(3)]].to_numpy() for n in CHAMBERS)
    assert (area <= chambers * 1.05 + 4 * pixel_mm2).all()  # overlaps make the sum larger
    assert np.corrcoef(area.ravel(), chambers.ravel())[0, 1] > 0.9
    middle = masks[:, 1]
    assert middle.any(axis=(1, 2)).all()
    grid = (np.arange(size) + 0.5) * LOCALIZER_FOV_MM / size - LOCALIZER_FOV_MM / 2
    centre_x = (middle * grid[None, None, :]).sum(axis=(1, 2)) / middle.sum(axis=(1, 2))
    assert np.abs(np.median(centre_x)) < 15.0
    share = masks.mean()
    _, thorax_masks, _ = render_localizers_and_masks(population, 3, size, "thorax")
    assert 0.1 < share < 0.6 and thorax_masks.mean() < share / 4
    # blood is bright: the heart's pixels are brighter than the rest of the crop on average
    assert images[masks].mean() > images[~masks].mean() + 0.1
