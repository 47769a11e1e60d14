"""Runs: a config becomes a saved run.

- `record`: the typed run record, its schema and migrations
- `store`: the run store (a JSON file per run, kept weights, export and import)
- `train`: `fit` (config, method, record) and `execute` (the same, saved whatever happens)
- `multiseed`: many seeds of one recipe trained together, each its own run
- `evaluate`: the full test pass of a saved run from its kept weights
- `inference`: predictions of a saved run on an uploaded image

May import: core.settings, core.plugins, core.access, core.data, core.datasets, core.models, core.config, core.engine,
core.methods.
"""
