"""MR images from DICOM series (pydicom), NIfTI (nibabel) and .npy arrays.

Two shapes come out, whatever the format:
- `SliceStack`: parallel 2D slices sorted along their normal, pixels (S, H, W) — a localizer;
- `CineStack`: slices x frames, pixels (Z, T, H, W) — a short-axis cine.

Slices are displayed the radiological way: rows run anterior to posterior, columns from the
patient's right to left. DICOM stores transverse slices that way already; NIfTI volumes are
reoriented to the closest canonical (RAS) axes and flipped to match, so a localizer exported
to NIfTI gives the same input as its DICOM series. A cine NIfTI keeps its stored voxel order
(slices on the third axis, frames on the fourth), as cine conversions usually write it.
"""

from __future__ import annotations

import io
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctrip.io.errors import GeometryError, UnreadableFileError, check_regular_file

NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
IMAGE_SUFFIXES: tuple[str, ...] = (*NIFTI_SUFFIXES, ".npy", ".zip", ".dcm")
# Archive and volume limits: a small file must not unpack into gigabytes (a zip bomb).
MAX_ARCHIVE_MEMBERS = 20_000  # a localizer or cine exam holds hundreds of images
MAX_MEMBER_BYTES = 64 << 20  # one uncompressed DICOM image; a 1024x1024 16-bit slice is 2 MiB
# All the images of one exam (archive or folder) together: a localizer series or a cine zip is
# tens of MiB (UK Biobank's short-axis cine zips 30-60 MiB); decoded to float32 beside the
# datasets, 256 MiB of files already needs about 1.5 GiB.
MAX_EXAM_BYTES = 256 << 20
MAX_VOLUME_BYTES = 2 << 30  # one decoded NIfTI volume or .npy array
# In-plane pixel spacing an MR image can have: clinical localizers and cines have 0.5-5 mm
# pixels; below 0.1 mm is microscopy, above 10 mm a 256-pixel image would span 2.5 m. Beyond
# these, a fixed-mm crop becomes a pad of tens of thousands of pixels (0.01 mm: 14,000 for
# 140 mm, gigabytes), so such a header is refused as damaged.
PIXEL_SPACING_RANGE_MM = (0.1, 10.0)
TRANSVERSE_MIN_COS = np.cos(
    np.deg2rad(45.0)
)  # oblique-transverse: normal within 45 deg of head-foot


@dataclass
class SliceStack:
    """Parallel slices (S, H, W) sorted along their normal; spacing (row, col) in mm if known."""

    pixels: np.ndarray
    spacing: tuple[float, float] | None
    positions: np.ndarray | None
    source: str


@dataclass
class CineStack:
    """A cine: (Z, T, H, W) slices x frames; spacing (row, col) in mm if known."""

    pixels: np.ndarray
    spacing: tuple[float, float] | None
    source: str


@dataclass
class _DicomSlice:
    name: str
    pixels: np.ndarray
    series: str
    normal: np.ndarray | None
    offset: float | None  # position along the normal, mm
    spacing: tuple[float, float] | None
    time: float  # trigger time (cine) or instance number


def image_suffix(path: Path) -> str:
    """The image format suffix of `path` ('.nii.gz' counts as one), '' for a folder."""
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return "" if path.is_dir() else path.suffix.lower()


def _dicom_files(path: Path) -> list[tuple[str, object]]:
    """(name, dataset) of every DICOM image in a file, a folder (recursively) or a zip archive."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    def read(name: str, source) -> object | None:
        try:
            ds = pydicom.dcmread(source)
        except InvalidDicomError:
            return None  # a non-DICOM file beside the images (UK Biobank zips hold a manifest)
        except Exception as err:
            raise UnreadableFileError(f"{name}: not a readable DICOM file ({err})") from err
        return ds if "PixelData" in ds else None

    found = []
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        if len(files) > MAX_ARCHIVE_MEMBERS:
            raise UnreadableFileError(
                f"{path}: {len(files)} files, more than the {MAX_ARCHIVE_MEMBERS} an imaging "
                "exam holds; refused"
            )
        for file in files:
            _check_file_size(file)
        total = sum(file.stat().st_size for file in files)
        if total > MAX_EXAM_BYTES:
            raise UnreadableFileError(_exam_too_big(path, f"holds {total >> 20} MiB of files"))
        for file in files:
            if (ds := read(str(file), file)) is not None:
                found.append((str(file), ds))
    elif path.suffix.lower() == ".zip":
        check_regular_file(path)
        try:
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                if len(members) > MAX_ARCHIVE_MEMBERS:
                    raise UnreadableFileError(
                        f"{path}: {len(members)} files in the archive, more than the "
                        f"{MAX_ARCHIVE_MEMBERS} an imaging exam holds; refused"
                    )
                # zipfile never returns more than a member's declared size (more fails its
                # CRC check), so the directory's sizes bound what would be read
                declared = sum(m.file_size for m in members)
                if declared > MAX_EXAM_BYTES:
                    raise UnreadableFileError(
                        _exam_too_big(path, f"unpacks to {declared >> 20} MiB (a zip bomb?)")
                    )
                for member in sorted(members, key=lambda m: m.filename):
                    name = f"{path}:{member.filename}"
                    if (
                        ds := read(name, io.BytesIO(_read_member(archive, member, name)))
                    ) is not None:
                        found.append((name, ds))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as err:
            raise UnreadableFileError(f"{path}: not a readable zip archive ({err})") from err
    else:
        _check_file_size(check_regular_file(path))
        ds = read(str(path), path)
        if ds is None:
            raise UnreadableFileError(f"{path}: not a DICOM image")
        found.append((str(path), ds))
    if not found:
        raise UnreadableFileError(f"{path}: no DICOM image found")
    return found


def _check_file_size(file: Path) -> None:
    if file.stat().st_size > MAX_MEMBER_BYTES:
        raise UnreadableFileError(
            f"{file}: {file.stat().st_size >> 20} MiB, far more than one DICOM image "
            f"(limit {MAX_MEMBER_BYTES >> 20} MiB); refused"
        )


def _exam_too_big(path: Path, what: str) -> str:
    return (
        f"{path}: {what}; one imaging exam holds far less (limit {MAX_EXAM_BYTES >> 20} MiB); "
        "refused"
    )


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, name: str) -> bytes:
    """A member's bytes, refusing one that unpacks beyond `MAX_MEMBER_BYTES`.

    The size in the archive's directory can lie, so at most the limit plus one byte is read.
    """
    too_big = UnreadableFileError(
        f"{name}: unpacks to more than {MAX_MEMBER_BYTES >> 20} MiB, far more than one DICOM "
        "image; refused (a zip bomb?)"
    )
    if member.file_size > MAX_MEMBER_BYTES:
        raise too_big
    with archive.open(member) as handle:
        data = handle.read(MAX_MEMBER_BYTES + 1)
    if len(data) > MAX_MEMBER_BYTES:
        raise too_big
    return data


def _dicom_slice(name: str, ds) -> _DicomSlice:
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise UnreadableFileError(
            f"{name}: multi-frame DICOM is not supported; export single frames"
        )
    try:
        pixels = ds.pixel_array.astype(np.float32)
    except Exception as err:
        raise UnreadableFileError(f"{name}: the pixel data cannot be decoded ({err})") from err
    if pixels.ndim != 2:
        raise GeometryError(f"{name}: pixel data of shape {pixels.shape} is not a grey-level image")
    pixels = pixels * float(ds.get("RescaleSlope", 1) or 1) + float(
        ds.get("RescaleIntercept", 0) or 0
    )
    normal = offset = spacing = None
    if "ImageOrientationPatient" in ds and "ImagePositionPatient" in ds:
        orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
        normal = np.cross(orientation[:3], orientation[3:])
        normal /= np.linalg.norm(normal)
        offset = float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=float)))
    if "PixelSpacing" in ds:
        try:
            spacing = (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))
        except (TypeError, ValueError, IndexError) as err:
            raise UnreadableFileError(
                f"{name}: PixelSpacing {ds.PixelSpacing!r} is not two numbers"
            ) from err
        check_spacing(spacing, name, "PixelSpacing")
    time = ds.get("TriggerTime")
    time = float(time) if time not in (None, "") else float(ds.get("InstanceNumber", 0) or 0)
    return _DicomSlice(
        name, pixels, str(ds.get("SeriesInstanceUID", "")), normal, offset, spacing, time
    )


def check_spacing(spacing: tuple[float, float], source: str, field: str) -> tuple[float, float]:
    """`spacing` (row, column mm) when both lie in `PIXEL_SPACING_RANGE_MM`, else a
    `GeometryError` naming `source` and the header `field`, before any pixel is cropped."""
    low, high = PIXEL_SPACING_RANGE_MM
    if not all(low <= value <= high for value in spacing):  # also refuses NaN
        shown = ", ".join(f"{value:g}" for value in spacing)
        raise GeometryError(
            f"{source}: {field} of {shown} mm is not a plausible MR pixel spacing "
            f"({low:g}-{high:g} mm); refused"
        )
    return spacing


def plane_name(normal: np.ndarray) -> str:
    return ("sagittal", "coronal", "transverse")[int(np.argmax(np.abs(normal)))]


def _same_shape(slices: list[_DicomSlice], what: str, source: Path) -> None:
    shapes = {s.pixels.shape for s in slices}
    if len(shapes) > 1:
        raise GeometryError(f"{source}: the {what} slices have different sizes {sorted(shapes)}")


def read_dicom_localizer(path: str | Path) -> SliceStack:
    """The transverse slices of a DICOM localizer (folder, zip or file), sorted head to foot.

    A scout exam mixes planes (tri-planar localizers beside a transverse stack); slices are
    grouped by series and orientation, and the transverse group with most slices is kept.
    """
    path = Path(path)
    slices = [_dicom_slice(name, ds) for name, ds in _dicom_files(path)]
    if all(s.normal is None for s in slices):  # no geometry: trust the instance order
        slices.sort(key=lambda s: s.time)
        _same_shape(slices, "localizer", path)
        return SliceStack(np.stack([s.pixels for s in slices]), slices[0].spacing, None, str(path))
    groups: dict[tuple, list[_DicomSlice]] = defaultdict(list)
    planes = set()
    for s in slices:
        if s.normal is None:
            continue
        planes.add(plane_name(s.normal))
        if abs(s.normal[2]) >= TRANSVERSE_MIN_COS:
            groups[(s.series, *np.round(s.normal, 2))].append(s)
    if not groups:
        raise GeometryError(
            f"{path}: no transverse slice (the images are {', '.join(sorted(planes))})"
        )
    group = max(groups.values(), key=len)
    group.sort(key=lambda s: s.offset)
    _same_shape(group, "transverse localizer", path)
    offsets = np.array([s.offset for s in group])
    if len(group) > 1 and np.min(np.diff(offsets)) < 1e-3:
        raise GeometryError(f"{path}: two transverse slices lie at the same position")
    # DICOM patient z points to the head: descending height runs head to foot.
    order = np.argsort(-offsets * np.sign(group[0].normal[2]), kind="stable")
    return SliceStack(
        pixels=np.stack([group[i].pixels for i in order]),
        spacing=group[0].spacing,
        positions=offsets[order],
        source=str(path),
    )


def read_dicom_cine(path: str | Path) -> CineStack:
    """A DICOM cine (folder or zip; one series per slice or one for all), as (Z, T, H, W).

    Frames are grouped by slice position along the normal and ordered by trigger time; slices
    are ordered by position. Every slice must have the same number of frames and size.
    """
    path = Path(path)
    slices = [_dicom_slice(name, ds) for name, ds in _dicom_files(path)]
    if any(s.offset is None for s in slices):
        raise GeometryError(f"{path}: cine images without ImagePositionPatient/Orientation")
    by_position: dict[float, list[_DicomSlice]] = defaultdict(list)
    for s in slices:
        by_position[round(s.offset, 1)].append(s)
    counts = {len(frames) for frames in by_position.values()}
    if len(counts) > 1:
        raise GeometryError(f"{path}: the cine slices have different frame counts {sorted(counts)}")
    _same_shape(slices, "cine", path)
    stack = [
        np.stack([f.pixels for f in sorted(by_position[p], key=lambda f: f.time)])
        for p in sorted(by_position)
    ]
    return CineStack(np.stack(stack), slices[0].spacing, str(path))


def _open_nifti(path: Path):
    """A NIfTI image with its header read and its size checked; no voxel is read yet."""
    import nibabel as nib

    check_regular_file(path)
    try:
        image = nib.load(str(path))
    except Exception as err:
        raise UnreadableFileError(f"{path}: not a readable NIfTI image ({err})") from err
    _check_volume_size(path, image.shape)
    return image


def _nifti_voxels(image, path: Path) -> np.ndarray:
    try:
        return np.asarray(image.dataobj, dtype=np.float32)
    except Exception as err:
        raise UnreadableFileError(f"{path}: not a readable NIfTI image ({err})") from err


def _nifti_spacing(image, path: Path) -> tuple[float, float]:
    """(row, column) mm of a volume whose first two voxel axes are in-plane, checked."""
    zooms = image.header.get_zooms()
    return check_spacing((float(zooms[1]), float(zooms[0])), str(path), "pixdim (voxel size)")


def _check_volume_size(path: Path, shape: tuple[int, ...]) -> None:
    nbytes = 4 * int(np.prod(shape, dtype=np.float64))
    if nbytes > MAX_VOLUME_BYTES:
        raise UnreadableFileError(
            f"{path}: a {list(shape)} volume is {nbytes / 2**30:.1f} GiB as float32, above the "
            f"{MAX_VOLUME_BYTES >> 30} GiB limit; refused"
        )


def read_nifti_localizer(path: str | Path) -> SliceStack:
    """A 3D NIfTI localizer as transverse slices (S, H, W), head to foot, radiological view."""
    import nibabel as nib

    path = Path(path)
    image = _open_nifti(path)
    codes = nib.aff2axcodes(image.affine)
    if len([d for d in image.shape if d != 1]) != 3:
        raise GeometryError(f"{path}: a localizer must be a 3D volume, this one is {image.shape}")
    if codes[2] not in ("S", "I"):
        raise GeometryError(
            f"{path}: the slices are not transverse (voxel axes {''.join(codes)}; the third "
            "axis must run head-foot)"
        )
    _nifti_spacing(image, path)  # before any voxel is read
    try:
        canonical = nib.as_closest_canonical(image)  # voxel axes point Right, Anterior, Superior
    except Exception as err:
        raise UnreadableFileError(f"{path}: not a readable NIfTI image ({err})") from err
    data = np.squeeze(_nifti_voxels(canonical, path))
    # canonical voxel (x, y, z) -> row goes posterior, column goes to the patient's left,
    # slices run head to foot.
    pixels = np.ascontiguousarray(data[::-1, ::-1, ::-1].transpose(2, 1, 0))
    z_index = np.arange(data.shape[2])[::-1]
    positions = canonical.affine[2, 2] * z_index + canonical.affine[2, 3]
    return SliceStack(pixels, _nifti_spacing(canonical, path), positions, str(path))


def read_nifti_cine(path: str | Path) -> CineStack:
    """A 4D NIfTI cine (X, Y, Z, T) as (Z, T, H, W) with rows along Y."""
    path = Path(path)
    image = _open_nifti(path)
    if len(image.shape) != 4:
        raise GeometryError(
            f"{path}: a cine must be a 4D volume (X, Y, Z, T), this one is {image.shape}"
        )
    spacing = _nifti_spacing(image, path)
    data = _nifti_voxels(image, path)
    return CineStack(np.ascontiguousarray(data.transpose(2, 3, 1, 0)), spacing, str(path))


def _load_npy(path: Path) -> np.ndarray:
    check_regular_file(path)
    try:
        header = np.load(path, mmap_mode="r", allow_pickle=False)
        _check_volume_size(path, header.shape)
        if header.dtype.kind not in "biuf":
            raise UnreadableFileError(f"{path}: dtype {header.dtype} is not numeric pixels")
        return np.asarray(header, dtype=np.float32)
    except UnreadableFileError:
        raise
    except (OSError, ValueError, EOFError) as err:
        reason = "the file is empty" if path.is_file() and path.stat().st_size == 0 else err
        raise UnreadableFileError(f"{path}: not a readable .npy array ({reason})") from err


def read_localizer(path: str | Path) -> SliceStack:
    """A localizer from a DICOM folder/zip/file, a NIfTI volume, or an (S, H, W) .npy array."""
    path = Path(path)
    suffix = image_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return read_nifti_localizer(path)
    if suffix == ".npy":
        pixels = _load_npy(path)
        if pixels.ndim != 3:
            raise GeometryError(
                f"{path}: a localizer array must be (slices, H, W), not {pixels.shape}"
            )
        return SliceStack(pixels, None, None, str(path))
    return read_dicom_localizer(path)


def read_cine(path: str | Path) -> CineStack:
    """A cine from DICOM (folder/zip), a 4D NIfTI, or a (Z, T, H, W) / (T, H, W) .npy array."""
    path = Path(path)
    suffix = image_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return read_nifti_cine(path)
    if suffix == ".npy":
        pixels = _load_npy(path)
        if pixels.ndim == 3:
            pixels = pixels[None]
        if pixels.ndim != 4:
            raise GeometryError(
                f"{path}: a cine array must be (Z, T, H, W) or (T, H, W), not {pixels.shape}"
            )
        return CineStack(pixels, None, str(path))
    return read_dicom_cine(path)
