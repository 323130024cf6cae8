"""Analysis of finished runs: agreement metrics, the Table 2 and fraction-curve tables, figures,
and attention/attribution maps. The notebooks compute every published number with this package,
so a run's cache key covers it (see `ctrip.pipeline.runner.run_keys`)."""
