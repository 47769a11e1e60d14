"""Methods: what a method is, the method registry, the pieces several methods share, then one file per method.

- `base`: `Method` (the fields it reads, presets, checks, estimate, run), `RunContext`, `Outcome`, the final evaluation
- `registry`: `register`, `get_method`, `list_methods`, presets, `validate`
- shared pieces: `frozen` (frozen-backbone features cached on disk, the standardised linear head), `centroids`
  (heads computed from the class means, plain or LDA),
  `pseudo_labels` (which unlabeled images, which predictions are accepted, the gallery), `knn_graph`
  (the kNN graph of whitened features and label spreading), `step_timings` (time estimates from measured steps)
- one file per method: `scratch`, `transfer`, `selftrain`, `labelspread`, `fixmatch`, `spreadtune`

May import: core.settings, core.plugins, core.access, core.data, core.datasets, core.models, core.config, core.engine.
"""
