"""The data layer: the small-data splits (labeled, unlabeled with its hidden labels kept apart, test) from
CIFAR-10 or a folder, cached as uint8 tensors, and augmentation pipelines (as data, as torchvision code,
applied to whole batches).

- `splits`: the `Splits` type, the split of a training set, the validation split, the tensor cache
- `load`: `load_splits`, the dataset in use; `cifar`, `folder`: its two sources
- `pipelines`: the transform catalog, presets, the text and JSON forms of a pipeline
- `augment`: pipelines as torchvision objects and code, previews, batched training augmentation

May import: core.settings, core.plugins, core.access.
"""
