"""C-TRIP companion library: cohort data, models, losses, stages, metrics, pipeline."""

__version__ = "0.1.0"
