"""The three training stages: model building from a cohort (`build`), the LightningModules
(`modules`), the recipes the notebooks call (`train`), the checkpoint format (`checkpoint`) and
inference (`inference`); their configuration is `ctrip.config`. Lightning is imported only by
`modules` and inside the recipes."""
