"""Small Data Lab's core: data, augmentations, models, training, semi-supervised learning, run store.

Importable without Streamlit; the app's pages only call into it.
"""

from core.config import ConfigError, TrainConfig, list_presets, preset, validate

__all__ = ["ConfigError", "TrainConfig", "list_presets", "preset", "validate"]
