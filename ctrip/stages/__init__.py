"""The three training stages: LightningModules (`modules`), their configuration (`config`) and
the run functions the pipeline calls (`train`). Lightning is imported only by `modules`."""
