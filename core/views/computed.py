"""Views that take seconds to compute, as requests a worker answers: a feature map (features of a
network, t-SNE, the 10-NN score) and label spreading replayed on one. The server never computes them:
a page builds a `ViewRequest` (cheap), reads its result if it is on disk, and otherwise queues a
`view` job (core.jobs.worker runs `compute`). Results are JSON files in CACHE_DIR/views, named by the
request's content and the dataset's fingerprint, so any page, session or server finds them at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.config import TrainConfig
from core.data.splits import Splits
from core.methods.frozen import cache_key
from core.models import weights_id
from core.views.charts import image_data_urls, map_frame
from core.views.featuremap import (
    Backbone,
    map_features,
    map_images,
    neighbour_accuracy,
    project,
    spread_replay,
)

ProgressFn = Callable[[float, str], None]
WHATS = ("map", "replay")
TSNE_S_PER_POINT = 0.012  # t-SNE on 2 cores, 1,100 points in 10-15 s; replaced by what this machine measured


@dataclass(frozen=True)
class ViewRequest:
    """What to draw: a map of `n` images of `source` through a network (what="map"), or label spreading
    replayed on the map of unlabeled images (what="replay"). run_id: a trained run's kept network."""

    what: str
    arch: str
    weights: str
    resolution: int
    normalize: bool
    label: str
    source: str = "test"
    n: int = 1000
    run_id: str = ""

    @classmethod
    def of(cls, backbone: Backbone, what: str, source: str, n: int) -> ViewRequest:
        if what not in WHATS:
            raise ValueError(f"what must be one of {WHATS}, not {what!r}")
        return cls(what, backbone.arch, backbone.weights, backbone.resolution, backbone.normalize, backbone.label,
                   "unlabeled" if what == "replay" else source, n, backbone.state_id)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ViewRequest:
        return cls(**data)

    def key(self, fingerprint: str) -> str:
        return cache_key("view1", self.what, self.arch, weights_id(self.weights), self.resolution, self.normalize,
                         self.run_id, self.source, self.n, fingerprint)  # fmt: skip

    def config(self) -> TrainConfig:
        """The network it maps, as a config: what its job is labelled with and its step times are keyed by."""
        return TrainConfig(arch=self.arch, resolution=self.resolution)

    def map_request(self) -> ViewRequest:
        """The map a replay is drawn on."""
        return ViewRequest(**(self.to_dict() | {"what": "map"}))


def result_path(cache_dir: Path, request: ViewRequest, fingerprint: str) -> Path:
    return Path(cache_dir) / "views" / f"{request.key(fingerprint)}.json"


def read_result(cache_dir: Path | None, request: ViewRequest, fingerprint: str) -> dict[str, Any] | None:
    """The computed view, or None when it is not computed yet (or its file is damaged: computed again)."""
    return None if cache_dir is None else read_file(result_path(cache_dir, request, fingerprint))


def read_file(path: Path) -> dict[str, Any] | None:
    """A result file's content; None when it is missing or damaged (then it is computed again)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _write(cache_dir: Path, request: ViewRequest, fingerprint: str, result: dict[str, Any]) -> None:
    path = result_path(cache_dir, request, fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)  # readers see the old state or the whole new file


def compute(
    request: ViewRequest,
    splits: Splits,
    cache_dir: Path,
    load_state: Callable[[str], dict] | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Computes the view (in a worker), writes it beside the others and returns it. load_state(run_id):
    a trained run's kept weights. should_stop is asked between batches of images (InterruptedError)."""
    progress = progress or (lambda f, t: None)
    state = load_state(request.run_id) if request.run_id else None
    backbone = Backbone(request.arch, request.weights, request.resolution, request.normalize, request.label, state,
                        request.run_id)  # fmt: skip
    share = 0.3 if request.what == "map" else 0.2

    def features_progress(f: float, text: str) -> None:
        progress(f * share, text)

    feats = map_features(backbone, splits, request.source, request.n, cache_dir, features_progress, should_stop)
    x, y, _ = map_images(splits, request.source, request.n)
    map_req = request.map_request()
    result = read_result(cache_dir, map_req, splits.fingerprint)
    if result is None:
        progress(share, f"t-SNE of {len(feats):,} points")
        coords = project(feats, cache_dir)
        n_lab = len(splits.labeled_y)  # without hidden labels, only the labeled images have a class to show
        names = [splits.classes[int(c)] for c in (y if y is not None else splits.labeled_y)]
        names += [] if y is not None else ["unlabeled"] * (len(x) - n_lab)
        knn = neighbour_accuracy(feats, y) if y is not None else None
        frame = map_frame(coords, names, len(splits.labeled_y), image_data_urls(x))
        result = {"frame": frame.to_dict("records"), "knn": knn}
        _write(cache_dir, map_req, splits.fingerprint, result)
    if request.what == "map":
        progress(1.0, "map drawn")
        return result
    progress(0.8, "label spreading, step by step")
    hidden = None if y is None else y[len(splits.labeled_y) :]
    steps = spread_replay(feats, splits.labeled_y, len(splits.classes), hidden)
    replay = {"steps": [{"step": s.step, "labels": s.labels.tolist(), "reached": s.reached.tolist(),
                         "accuracy": s.accuracy, "reached_fraction": s.reached_fraction} for s in steps]}  # fmt: skip
    _write(cache_dir, request, splits.fingerprint, replay)
    progress(1.0, "replay computed")
    return replay


def compute_seconds(request: ViewRequest, per_image: float | None, n_labeled: int) -> float:
    """About how long `compute` takes: the images through the network (per_image from the step timings,
    None when unknown: a second per 100) and the t-SNE."""
    images = request.n + n_labeled
    return images * (per_image if per_image is not None else 0.01) + images * TSNE_S_PER_POINT
