"""Cache folders for cold runs: the shared cache's decoded images (linked, not copied) and nothing else, so
features, step timings and views start empty, as on a new install, without decoding the dataset again."""

from __future__ import annotations

import tempfile
from pathlib import Path


def decoded_only(shared: Path, folder: Path | None = None, prefix: str = "bench-cold-") -> Path:
    """folder (created; default: a new temporary one) holding links to shared's decoded images."""
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix=prefix))
    else:
        folder.mkdir(parents=True, exist_ok=False)
    for decoded in Path(shared).glob("folder-*.pt"):
        (folder / decoded.name).symlink_to(decoded.resolve())
    return folder
