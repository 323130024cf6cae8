"""The papermill pipeline, orchestration only: plan, a cached runner with provenance, executors,
and the book.

`ctrip.config.load_settings` merges `experiments.yaml` (the Table 2 methods and the notebooks) with
a profile (`ctrip/profiles/<name>.yaml`) and the overrides, and checks every value;
`plan.build_plan` expands them into runs, `runner.run_plan` executes them in dependency order
with caching, and `book.build_book` renders the Jupyter Book. What the notebooks compute lives
in `ctrip.analysis` and `ctrip.stages`; they import only `outputs` from here (the record of what
a run produced), so this file imports nothing: a run's code key stays what it reads.
"""
