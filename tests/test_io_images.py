"""Image readers and preprocessing on real files: pydicom's and nibabel's bundled test data."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.testing import data_path
from pydicom.data import get_testdata_file

from ctrip.data.schema import LOCALIZER_FOV_MM
from ctrip.io.errors import GeometryError, UnreadableFileError
from ctrip.io.images import CineStack, SliceStack, read_cine, read_localizer
from ctrip.io.preprocess import (
    CentredCropWarning,
    CropGeometryWarning,
    HeartBox,
    cardiac_frames,
    cine_input,
    expected_localizer_input,
    localizer_field_of_view_mm,
    localizer_input,
    normalize_intensity,
    resize,
)

DICOMDIR_TESTS = Path(get_testdata_file("MR_small.dcm")).parent / "dicomdirtests"
CT_STACK = DICOMDIR_TESTS / "98892001" / "CT5N"  # 5 consecutive transverse slices, 2.5 mm apart
TRIPLANAR = DICOMDIR_TESTS / "98892003" / "MR2"  # one slice per plane: a tri-planar scout
RADIAL = DICOMDIR_TESTS / "98892003" / "MR700"  # 7 radial long-axis slices, none transverse
GAPPED = DICOMDIR_TESTS / "77654033" / "CT2"  # 4 transverse slices, one 200 mm away
NIFTI = Path(data_path)


def mr_series(folder: Path, n: int = 5) -> Path:
    """A transverse series from pydicom's MR_small.dcm: the same slice shifted by its thickness."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
        position = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [position[0], position[1], position[2] + 0.8 * k]
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{k}"
        ds.PixelData = np.roll(ds.pixel_array, 4 * k, axis=1).tobytes()  # tell slices apart
        ds.save_as(folder / f"IM{k:04d}")
    (folder / "manifest.cvs").write_text("not a DICOM file, skipped like UK Biobank's\n")
    return folder


def test_dicom_series_from_pydicom_test_data() -> None:
    stack = read_localizer(CT_STACK)
    assert stack.pixels.shape == (5, 16, 16) and stack.spacing == pytest.approx(
        (0.488281, 0.488281)
    )
    assert np.all(np.diff(stack.positions) == pytest.approx(-2.5))  # head to foot
    with pytest.warns(CentredCropWarning, match="CT5N"):
        x = localizer_input(stack, 32)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1


def test_mr_series_slices_are_sorted_and_zip_reads_the_same(tmp_path: Path) -> None:
    folder = mr_series(tmp_path / "series")
    stack = read_localizer(folder)
    reference = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    assert stack.pixels.shape == (5, 64, 64)
    # head to foot: the last written slice (highest z) comes first
    np.testing.assert_array_equal(stack.pixels[0], np.roll(reference, 16, axis=1))
    archive = tmp_path / "1000001_20207_2_0.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for file in sorted(folder.iterdir()):
            handle.write(file, f"scout/{file.name}")
    np.testing.assert_array_equal(read_localizer(archive).pixels, stack.pixels)


def test_nifti_export_of_a_dicom_series_gives_the_same_input(tmp_path: Path) -> None:
    """A DICOM stack written as NIfTI (LPS -> RAS affine) reads back slice for slice."""
    stack = read_localizer(CT_STACK)
    datasets = sorted(
        (pydicom.dcmread(f) for f in CT_STACK.iterdir()), key=lambda d: d.InstanceNumber
    )
    first = datasets[0]
    row_dir, col_dir = (
        np.array(first.ImageOrientationPatient[:3]),
        np.array(first.ImageOrientationPatient[3:]),
    )
    spacing = [float(v) for v in first.PixelSpacing]
    step = np.array(datasets[1].ImagePositionPatient) - np.array(first.ImagePositionPatient)
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = row_dir * spacing[1], col_dir * spacing[0], step
    affine[:3, 3] = first.ImagePositionPatient
    affine = np.diag([-1, -1, 1, 1]) @ affine  # DICOM LPS to NIfTI RAS
    volume = np.stack(
        [d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in datasets], -1
    )
    nib.save(
        nib.Nifti1Image(volume.transpose(1, 0, 2).astype(np.float32), affine),
        tmp_path / "ct.nii.gz",
    )
    from_nifti = read_localizer(tmp_path / "ct.nii.gz")
    np.testing.assert_allclose(from_nifti.pixels, stack.pixels)
    assert from_nifti.spacing == pytest.approx(stack.spacing)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (TRIPLANAR, "1 transverse slice"),
        (RADIAL, "no transverse slice"),
        (Path(get_testdata_file("MR_small.dcm")), "1 transverse slice"),
        (GAPPED, "not consecutive"),
        (NIFTI / "functional.nii", "must be a 3D volume"),
    ],
)
def test_wrong_geometry_is_named(path: Path, message: str) -> None:
    with pytest.raises(GeometryError, match=message) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore", CentredCropWarning)
        localizer_input(read_localizer(path), 16)
    assert path.name in str(err.value)


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="MR_truncated"):
        read_localizer(get_testdata_file("MR_truncated.dcm"))
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(UnreadableFileError, match="bad.nii.gz"):
        read_localizer(tmp_path / "bad.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnreadableFileError, match="no DICOM image"):
        read_localizer(tmp_path / "empty")
    (tmp_path / "bad.zip").write_bytes(b"PK nonsense")
    with pytest.raises(UnreadableFileError, match="zip"):
        read_localizer(tmp_path / "bad.zip")


def test_nibabel_test_images_as_localizers() -> None:
    anatomical = read_localizer(NIFTI / "anatomical.nii")  # LAS 33 x 41 x 25, 2 mm
    assert anatomical.pixels.shape == (25, 41, 33) and anatomical.spacing == (2.0, 2.0)
    assert np.all(np.diff(anatomical.positions) < 0)
    canonical = nib.as_closest_canonical(nib.load(NIFTI / "anatomical.nii")).get_fdata()
    # first slice is the top one, row 0 the most anterior, column 0 the patient's right
    np.testing.assert_allclose(anatomical.pixels[0, 0, 0], canonical[-1, -1, -1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CentredCropWarning)
        x = localizer_input(read_localizer(NIFTI / "anatomical.nii"), 24)
        assert x.shape == (3, 24, 24) and np.isfinite(x).all()
        # standard.nii.gz has 4x5-pixel slices: too small to hold a heart, refused by name
        with pytest.raises(GeometryError, match="standard.nii.gz: images of"):
            localizer_input(read_localizer(NIFTI / "standard.nii.gz"), 24)


def test_mask_and_box_choose_the_slices_and_crop(tmp_path: Path) -> None:
    stack = read_localizer(mr_series(tmp_path / "series", n=7))
    mask = np.zeros(stack.pixels.shape, dtype=np.uint8)
    mask[4, 20:30, 30:44] = 1
    mask[5, 22:28, 32:40] = 1
    side_mm = 16 * stack.spacing[0]  # a fixed field of view of 16 x 16 pixels
    assert stack.spacing[0] == stack.spacing[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CentredCropWarning)  # no guessing with a mask or box
        warnings.simplefilter("error", CropGeometryWarning)  # the 10 x 14 pixel box fits
        from_mask = localizer_input(stack, 16, mask=mask, crop_mm=side_mm)
        box = HeartBox.parse("20,30,30,44,4")
        from_box = localizer_input(stack, 16, box=box, crop_mm=side_mm)
    np.testing.assert_allclose(from_mask, from_box)  # same slices 3-5, same box centre
    # The crop is centred on the box but its size is the field of view, not the box's.
    by_hand = normalize_intensity(stack.pixels[3:6, 25 - 8 : 25 + 8, 37 - 8 : 37 + 8])
    np.testing.assert_allclose(from_box, resize(by_hand, 16), atol=1e-5)
    with pytest.warns(CropGeometryWarning, match="larger than"):
        localizer_input(stack, 16, box=box, crop_mm=8 * stack.spacing[0])
    with pytest.raises(GeometryError, match="mask"):
        localizer_input(stack, 16, mask=mask[:3])
    with pytest.raises(ValueError, match="r0,c0,r1,c1"):
        HeartBox.parse("1,2,3")


def test_square_crop_in_millimetres_and_resize() -> None:
    pixels = np.random.default_rng(0).uniform(size=(3, 100, 50)).astype(np.float32)
    stack = SliceStack(pixels, spacing=(1.0, 2.0), positions=None, source="anisotropic")
    with pytest.warns(CentredCropWarning):
        x = localizer_input(stack, 20, crop_mm=60.0)  # 60 x 30 pixels, square in mm
    assert x.shape == (3, 20, 20)
    image = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (1, 64, 1))
    small = resize(image, 16)
    assert small.shape == (1, 16, 16) and np.all(np.diff(small[0, 0]) > 0)
    with pytest.raises(GeometryError, match="blank"):
        normalize_intensity(np.ones((3, 8, 8)))


def test_cine_from_a_nibabel_4d_image() -> None:
    cine = read_cine(NIFTI / "functional.nii")  # 17 x 21 x 3 slices x 20 frames
    assert isinstance(cine, CineStack) and cine.pixels.shape == (3, 20, 21, 17)
    x = cine_input(cine, 16, frames=(0, 7))
    assert x.shape == (3, 16, 16)
    with pytest.warns(CentredCropWarning, match="ED = frame 0"):
        cine_input(cine, 16)
    with pytest.raises(GeometryError, match="must be a 4D"):
        read_cine(NIFTI / "anatomical.nii")


def test_ed_es_from_the_lv_blood_pool() -> None:
    frames = np.zeros((10, 20, 20))
    radius = 6 - 3 * np.sin(np.pi * np.arange(10) / 10)  # fullest at 0, emptiest at 5
    yy, xx = np.mgrid[:20, :20]
    mask = np.stack([((yy - 10) ** 2 + (xx - 10) ** 2 < r**2).astype(int) for r in radius])
    mask[:, 0, 0] = 2  # myocardium label, ignored
    assert cardiac_frames(frames, mask=mask) == (0, 5, 5)
    assert cardiac_frames(frames, indices=(1, 4)) == (1, 4, 6)
    with pytest.raises(GeometryError, match="same frame"):
        cardiac_frames(frames, indices=(3, 3))
    cine = CineStack(np.random.default_rng(0).uniform(size=(3, 10, 20, 20)), (1.0, 1.0), "cine.npy")
    full_mask = np.zeros((3, 10, 20, 20), dtype=int)
    full_mask[1] = mask
    np.testing.assert_allclose(cine_input(cine, 8, mask=full_mask), cine_input(cine, 8, mask=mask))


def test_npy_inputs(tmp_path: Path) -> None:
    np.save(tmp_path / "loc.npy", np.random.default_rng(0).uniform(size=(4, 16, 16)))
    assert read_localizer(tmp_path / "loc.npy").pixels.shape == (4, 16, 16)
    np.save(tmp_path / "flat.npy", np.zeros((16, 16)))
    with pytest.raises(GeometryError, match="slices, H, W"):
        read_localizer(tmp_path / "flat.npy")
    np.save(tmp_path / "cine.npy", np.zeros((20, 16, 16)))
    assert read_cine(tmp_path / "cine.npy").pixels.shape == (1, 20, 16, 16)


def cine_series(
    folder: Path, n_slices: int = 3, n_frames: int = 5, drop_last: bool = False
) -> Path:
    """A short-axis cine from MR_small.dcm: one series per slice, frames with trigger times."""
    folder.mkdir(parents=True, exist_ok=True)
    for z in range(n_slices):
        for t in range(n_frames):
            if drop_last and (z, t) == (n_slices - 1, n_frames - 1):
                continue
            ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
            position = [float(v) for v in ds.ImagePositionPatient]
            ds.ImagePositionPatient = [position[0], position[1], position[2] + 8.0 * z]
            ds.SeriesInstanceUID = f"{ds.SeriesInstanceUID}.{z}"
            ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{z}.{t}"
            ds.TriggerTime = 40.0 * t
            ds.InstanceNumber = n_frames - t  # instance order disagrees with time on purpose
            ds.PixelData = (
                (ds.pixel_array // (1 + t + 10 * z)).astype(ds.pixel_array.dtype).tobytes()
            )
            ds.save_as(folder / f"z{z}t{t}.dcm")
    return folder


def test_dicom_cine_is_grouped_by_slice_and_ordered_by_time(tmp_path: Path) -> None:
    cine = read_cine(cine_series(tmp_path / "cine"))
    reference = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array.astype(np.float32)
    assert cine.pixels.shape == (3, 5, 64, 64)
    np.testing.assert_array_equal(cine.pixels[1, 3], reference // (1 + 3 + 10))
    x = cine_input(cine, 16, frames=(0, 2))
    assert x.shape == (3, 16, 16)
    with pytest.raises(GeometryError, match="different frame counts"):
        read_cine(cine_series(tmp_path / "uneven", drop_last=True))


def test_localizer_crop_has_a_fixed_field_of_view_whatever_the_heart_size() -> None:
    """Two hearts of different size give crops of the same mm per pixel: the bigger heart
    looks bigger (a box-sized crop would scale every heart to the same apparent size)."""
    yy, xx = np.mgrid[:200, :200]
    inputs = []
    for radius in (15, 30):
        disc = ((yy - 90) ** 2 + (xx - 110) ** 2 < radius**2).astype(np.float32)
        pixels = np.stack([disc] * 5) + 0.1
        stack = SliceStack(pixels, spacing=(1.0, 1.0), positions=None, source="discs")
        box = HeartBox(90 - radius, 110 - radius, 90 + radius, 110 + radius, 2)
        inputs.append(localizer_input(stack, 70, box=box, crop_mm=LOCALIZER_FOV_MM))
    small, big = ((x[1] > 0.5).sum() for x in inputs)
    assert big / small == pytest.approx(4.0, rel=0.1)  # area ratio (30 / 15)^2
    assert expected_localizer_input(64).startswith("three consecutive")
    assert "2.19 mm per pixel" in expected_localizer_input(64)
    assert localizer_field_of_view_mm({"recipe": {"localizer": {"field_of_view_mm": 360}}}) == 360
    assert localizer_field_of_view_mm({"provenance": {"preprocessing": {"crop_mm": 150}}}) == 150
    assert localizer_field_of_view_mm({}) == LOCALIZER_FOV_MM
