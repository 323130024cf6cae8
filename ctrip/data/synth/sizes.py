"""Array sizes of a simulated cohort, one set per pipeline profile."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SynthSizes:
    """Image sides (pixels), the localizer's field of view and ECG sampling of a simulated cohort.

    Profiles:
    - smoke: 32x32 images, ECG 100 Hz x 10 s (T = 1000): CI in minutes.
    - default: 64x64 images, ECG 250 Hz x 10 s (T = 2500): the book on a 2-core CPU; 64 pixels
      over the localizer's 140 mm heart-centred crop keep the heart about 40 pixels wide, and 250 Hz
      keeps the QRS (energy below ~40 Hz) intact.
    - paper: 224x224 images, ECG 500 Hz x 10 s (T = 5000), the sizes of the paper's public code.

    Localizers are heart-centred crops of `localizer_fov_mm` (140 mm: 2.2 mm per pixel at 64
    pixels, the heart ~40 pixels wide) unless `localizer_field` is "thorax" (the whole 360 mm
    scout; `localizer_fov_mm` None takes the field's own size).
    """

    image_size: int = 64
    cmr_size: int = 64
    ecg_sampling_rate_hz: float = 250.0
    ecg_seconds: float = 10.0
    localizer_field: str = "heart"
    localizer_fov_mm: float | None = 140.0

    @property
    def localizer_mm_per_pixel(self) -> float:
        from ctrip.data.synth.localizer import field_of_view_mm

        return field_of_view_mm(self.localizer_field, self.localizer_fov_mm) / self.image_size

    @property
    def ecg_samples(self) -> int:
        return int(round(self.ecg_sampling_rate_hz * self.ecg_seconds))

    @classmethod
    def for_profile(cls, profile: str) -> SynthSizes:
        profiles = {
            "smoke": cls(32, 32, 100.0, 10.0),
            "default": cls(64, 64, 250.0, 10.0),
            "paper": cls(224, 224, 500.0, 10.0),
        }
        if profile not in profiles:
            raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(profiles)}")
        return profiles[profile]

    def to_dict(self) -> dict:
        return asdict(self)
