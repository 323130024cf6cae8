"""The papermill pipeline: experiments, profiles, a cached runner with provenance, and the book.

A profile (`profiles/<name>.yaml`) is a set of parameters; `experiments.yaml` lists the Table 2
methods and the notebooks. `plan.build_plan` expands both into runs, `runner.run_plan` executes
them in dependency order with caching, and `book.build_book` renders the Jupyter Book.
"""

from ctrip.pipeline.plan import Run, build_plan, load_settings
from ctrip.pipeline.runner import PipelineError, run_plan

__all__ = ["PipelineError", "Run", "build_plan", "load_settings", "run_plan"]
