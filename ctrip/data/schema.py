"""Names shared by every part of the project: cardiac phenotypes, ECG leads, splits, modalities."""

CP_NAMES: list[str] = [
    "LVEDV", "LVESV", "LVSV", "LVEF", "LVCO", "LVM",
    "RVEDV", "RVESV", "RVSV", "RVEF",
    "LAVmax", "LAVmin", "LASV", "LAEF",
    "RAVmax", "RAVmin", "RASV", "RAEF",
]  # fmt: skip

CP_UNITS: dict[str, str] = {
    "LVEDV": "mL", "LVESV": "mL", "LVSV": "mL", "LVEF": "%", "LVCO": "L/min", "LVM": "g",
    "RVEDV": "mL", "RVESV": "mL", "RVSV": "mL", "RVEF": "%",
    "LAVmax": "mL", "LAVmin": "mL", "LASV": "mL", "LAEF": "%",
    "RAVmax": "mL", "RAVmin": "mL", "RASV": "mL", "RAEF": "%",
}  # fmt: skip

# UK Biobank imaging-derived phenotypes 24100-24117 (Bai et al. 2020), in CP_NAMES order.
CP_UKB_FIELDS: dict[str, int] = {name: 24100 + i for i, name in enumerate(CP_NAMES)}

LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)  # fmt: skip

SPLITS: tuple[str, ...] = ("train", "val", "test")
SEXES: tuple[str, ...] = ("female", "male")

IMAGE_MODALITIES: tuple[str, ...] = ("localizer", "cmr")
ARRAY_MODALITIES: tuple[str, ...] = ("localizer", "cmr", "ecg")
MODALITIES: tuple[str, ...] = ("localizer", "cmr", "ecg", "tabular")
# How generated text names each modality.
MODALITY_LABELS: dict[str, str] = {
    "localizer": "localizer",
    "cmr": "CMR",
    "ecg": "ECG",
    "tabular": "tabular",
}

# Localizer model input: a square of this side (mm) centred on the heart, resized to the
# cohort's image size, as the paper crops the segmented heart from the thorax. Simulated and
# imported cohorts share it, so a model trained on one reads the other's localizers.
LOCALIZER_FOV_MM: float = 140.0

# Optional per-subject masks, each on the pixels of one image array: name -> that array. A
# simulated cohort has the heart's mask on every localizer slice; an imported cohort has none.
MASKS: dict[str, str] = {"localizer_heart": "localizer"}

# Per-subject array shape after the subject axis: images (3, H, W), ECG (12, T).
ARRAY_CHANNELS: dict[str, int] = {"localizer": 3, "cmr": 3, "ecg": len(LEADS)}
ARRAY_NDIM: dict[str, int] = {"localizer": 4, "cmr": 4, "ecg": 3}

# Subjects-table columns that are not tabular inputs.
ID_COLUMNS: tuple[str, ...] = ("id", "split")
