"""Why ImageNet features beat training from scratch, drawn: a 2-D map of what a network's features
say about the images, and label spreading replayed on it step by step.

The projection is scikit-learn's t-SNE (README: why). Features and maps are cached by content, so a
map is computed once per (network, images) and a page rerun only reads it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.data.splits import Splits, save_cache
from core.engine.device import place, resolve_device, use_bf16
from core.methods.frozen import cache_key, cached_features, extract
from core.methods.knn_graph import SPREAD_ITERS, balance, knn_graph, spread_steps
from core.models import REGISTRY, create_model, list_weight_files, weights_id

ProgressFn = Callable[[float, str], None]
SOURCES = ("test", "unlabeled")
REPLAY_STEPS = (0, 1, 2, 5, 10, 20, SPREAD_ITERS)  # the spreading iterations the replay shows


@dataclass(frozen=True)
class Backbone:
    """The network whose features are mapped: an architecture with random or pretrained weights, or
    a trained run's network (state: its kept state_dict)."""

    arch: str
    weights: str = ""  # "" random init (seed 0), "imagenet" or a .pth path
    resolution: int = 64
    normalize: bool = False
    label: str = ""
    state: dict[str, torch.Tensor] | None = None
    state_id: str = ""  # what identifies `state` in the cache (the run id)

    def key(self) -> tuple[object, ...]:
        return (self.arch, weights_id(self.weights), self.resolution, self.normalize, self.state_id)


def pretrained_backbone(resolution: int = 64) -> Backbone:
    """The ImageNet backbone the lab has: a local checkpoint whose file name starts with a registered
    architecture (the offline lab's), else torchvision's ResNet-18 weights (downloaded)."""
    for path in list_weight_files():
        arch = max((a for a in REGISTRY if path.name.startswith(a)), key=len, default=None)
        if arch:
            return Backbone(arch, str(path), resolution, True, f"{arch}, ImageNet ({path.name})")
    return Backbone("resnet18", "imagenet", resolution, True, "resnet18, torchvision ImageNet weights")


def random_backbone(like: Backbone) -> Backbone:
    return Backbone(like.arch, "", like.resolution, like.normalize, f"{like.arch}, random initialisation")


def map_indices(splits: Splits, source: str, n: int) -> torch.Tensor:
    """A fixed random sample of n images of `source` (the same on every page and in every test)."""
    total = len(splits.test_y) if source == "test" else len(splits.unlabeled_x)
    n = min(n, total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(0))[:n].sort().values


def map_images(splits: Splits, source: str, n: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(images, their classes or None, indices): the labeled images first, then the sample of source.
    The classes of unlabeled images are the hidden labels: for colouring a diagnostic map only."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
    idx = map_indices(splits, source, n)
    if source == "test":
        images, classes = splits.test_x[idx], splits.test_y[idx]
    else:
        images = splits.unlabeled_x[idx]
        hidden = splits.unlabeled_hidden_y
        classes = hidden[idx] if hidden is not None else None
    x = torch.cat([splits.labeled_x, images])
    y = torch.cat([splits.labeled_y, classes]) if classes is not None else None
    return x, y, idx


def map_features(
    backbone: Backbone,
    splits: Splits,
    source: str,
    n: int,
    cache_dir: Path | None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Pooled features of the labeled images and the sample, cached under the backbone and the images."""
    x, _, idx = map_images(splits, source, n)

    def compute() -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # a random network is the same random network every time
            model = create_model(backbone.arch, len(splits.classes), backbone.weights, backbone.resolution,
                                 backbone.normalize)  # fmt: skip
        if backbone.state is not None:
            model.load_state_dict(backbone.state)
        device = resolve_device("auto")
        bf16 = use_bf16(device, "auto")
        place(model, device)
        return extract(model, x, device=device, bf16=bf16, progress=progress, what=f"{len(x):,} images",
                       should_stop=should_stop)  # fmt: skip

    key = cache_key("map", *backbone.key(), splits.fingerprint, source, len(idx), int(idx.sum()))
    return cached_features(cache_dir, key, compute)[0]


def project(features: torch.Tensor, cache_dir: Path | None = None, seed: int = 0) -> np.ndarray:
    """2-D t-SNE coordinates of features (N x D), cached by the features' content: the same features
    give the same map without a second t-SNE."""
    data = features.float().contiguous().numpy()
    digest = hashlib.sha256(data.tobytes() + f"{data.shape}|tsne1|{seed}".encode()).hexdigest()[:24]
    path = Path(cache_dir) / "maps" / f"{digest}.pt" if cache_dir else None
    if path is not None and path.exists():
        try:
            return torch.load(path, weights_only=True).numpy()
        except Exception:  # a damaged cache file is recomputed
            pass
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    # PCA to 50 dimensions first (the usual t-SNE preprocessing: faster, and less noise in the distances).
    reduced = PCA(min(50, *data.shape), random_state=seed).fit_transform(data)
    perplexity = min(30.0, (len(data) - 1) / 3)
    coords = TSNE(2, init="pca", perplexity=perplexity, random_state=seed, angle=0.8).fit_transform(reduced)
    coords = coords.astype(np.float32)
    if path is not None:
        save_cache(path, torch.from_numpy(coords))
    return coords


@dataclass(frozen=True)
class SpreadStep:
    step: int
    labels: torch.Tensor  # the current label of every unlabeled point (argmax of the balanced scores)
    reached: torch.Tensor  # bool: some label mass has arrived at the point
    accuracy: float | None  # of the reached points' labels, against the hidden labels (diagnostic only)
    reached_fraction: float


def spread_replay(
    features: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    hidden: torch.Tensor | None,
    k: int = 10,
    steps: tuple[int, ...] = REPLAY_STEPS,
) -> list[SpreadStep]:
    """Label spreading on the kNN graph of features (the labeled points first), recorded after each
    of `steps` iterations: the same graph and iterations as core.methods.knn_graph.label_spread, whose labels the
    last step equals. The hidden labels only score the replay; they never enter it."""
    graph = knn_graph(features, k)
    n_lab = len(labels)
    out = []
    for i, scores in enumerate(spread_steps(graph, labels, n_classes, iters=max(steps))):
        if i not in steps:
            continue
        unl = scores[n_lab:]
        reached = unl.sum(1) > 0
        current = balance(unl).argmax(1)
        acc = None
        if hidden is not None and bool(reached.any()):
            acc = float((current[reached] == hidden[reached]).float().mean())
        out.append(SpreadStep(i, current, reached, acc, float(reached.float().mean())))
    return out


def neighbour_accuracy(features: torch.Tensor, labels: torch.Tensor, k: int = 10) -> float:
    """How often a point's class is the majority class of its k nearest neighbours (cosine, itself
    left out): one number for how well the features separate the classes, which the map only shows."""
    z = torch.nn.functional.normalize(features.float() - features.float().mean(0), dim=1)
    sims = z @ z.T
    sims.fill_diagonal_(-2.0)
    neighbours = sims.topk(min(k, len(z) - 1), dim=1).indices
    votes = torch.nn.functional.one_hot(labels[neighbours], int(labels.max()) + 1).sum(1)
    return float((votes.argmax(1) == labels).float().mean())
