"""The synthetic cohort: subjects, localizers, cine frames, ECGs and tables from shared latents."""

from ctrip.data.synth.generate import generate_subjects, synthesize_cohort, tabular_variants
from ctrip.data.synth.population import sample_population
from ctrip.data.synth.sizes import SynthSizes

__all__ = [
    "SynthSizes",
    "generate_subjects",
    "sample_population",
    "synthesize_cohort",
    "tabular_variants",
]
