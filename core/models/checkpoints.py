"""Weight files: a local checkpoint loaded into a model, refused with a message that says what to do when
it cannot fit, and a file's identity by content (the feature caches' key)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn


class ModelError(ValueError):
    """Unknown model, unreadable weights or weights that do not fit; the message says what to do."""


def load_checkpoint(model: nn.Module, path: Path, adapt=None) -> None:
    """Loads a local state_dict file into model (torch.load with weights_only=True: no pickled code), or the
    "state_dict" entry of a whole checkpoint; adapt maps a published checkpoint's keys to the model's. Only the
    model's last layer may differ in shape (a head for another number of classes)."""
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist; give the path of a .pth state_dict")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle payloads, truncated files, other formats
        raise ModelError(
            f"cannot load {path} as a state_dict with weights_only=True ({type(err).__name__}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} is not a state_dict (a dict of tensors)")
    if adapt is not None:
        state = adapt(state, model)
    own = model.state_dict()
    # Heads are replaced anyway, so a checkpoint with another number of classes still fits: its last layer (the
    # one the model registers last) may differ in shape; any other layer that does is another architecture's.
    head = next(reversed(own), "").rsplit(".", 1)[0]
    mismatched = {k for k in state if k in own and state[k].shape != own[k].shape}
    head_keys = {k for k in mismatched if k.rsplit(".", 1)[0] == head}
    if mismatched - head_keys:
        k = sorted(mismatched - head_keys)[0]
        raise ModelError(
            f"{path} does not fit {type(model).__name__}: {len(mismatched - head_keys)} layers have other shapes "
            f"(e.g. {k}: {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} here); is it for another "
            "architecture?"
        )
    state = {k: v for k, v in state.items() if k not in head_keys}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in head_keys]
    if missing or result.unexpected_keys:
        raise ModelError(
            f"{path} does not fit {type(model).__name__}: {len(missing)} missing keys "
            f"(e.g. {missing[:2]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:2]}); is it for another architecture?"
        )


@lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def weights_id(weights: str) -> str:
    """Identifies weights by content, for feature caches: "", "imagenet" or a file's digest."""
    if weights in ("", "imagenet"):
        return weights or "random"
    st = Path(weights).stat()
    return _file_digest(str(Path(weights).resolve()), st.st_size, st.st_mtime_ns)
