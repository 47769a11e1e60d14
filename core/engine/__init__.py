"""The engine: what every method's training shares and nothing method-specific.

- `device`: the device, bf16 autocast, the environment a run records
- `loop`: the epoch loop (`train_loop` for one network, `train_lanes` for many seeds at once)
- `optim`: optimiser, schedule (a pure function of the step), weight averaging
- `predict`: prediction in large batches and the metrics of a test pass
- `cudagraph`: on a GPU, one step recorded as a CUDA graph and replayed
- `stacked`: per-seed RNG states and BatchNorm in plain operations, for seeds stacked under vmap

May import: core.settings, core.plugins, core.access, core.data, core.datasets, core.models, core.config.
"""
