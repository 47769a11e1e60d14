"""Pseudo-labels: which unlabeled images are used, which predictions are accepted, and the gallery
of the accepted ones (marked right or wrong from the hidden labels, for the Why page).

The hidden labels of the unlabeled images are read only to report pseudo-label accuracy, after the
pseudo-labels are chosen: scrambling them changes no number that training produces.
"""

from __future__ import annotations

import torch

from core.data.splits import Splits


def unlabeled_subset(splits: Splits, n: int) -> torch.Tensor:
    """Indices of the unlabeled images used: all, or a fixed random subset of n (the same for every run)."""
    total = len(splits.unlabeled_x)
    if n <= 0 or n >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(0))[:n].sort().values


def unlabeled_key(subset: torch.Tensor) -> tuple[object, ...]:
    """The feature-cache key of an unlabeled subset."""
    return ("unlabeled", len(subset), int(subset.sum()))


def select_pseudo_labels(probs: torch.Tensor, threshold: float, per_class: int) -> torch.Tensor:
    """Indices of accepted unlabeled images: confidence >= threshold and, per predicted class, the
    `per_class` most confident (0: no cap). Pure, so it is easy to test."""
    confidence, label = probs.max(1)
    keep = []
    for c in range(probs.shape[1]):
        idx = ((label == c) & (confidence >= threshold)).nonzero().flatten()
        if per_class:
            idx = idx[confidence[idx].argsort(descending=True)[:per_class]]
        keep.append(idx)
    return torch.cat(keep).sort().values


def pseudo_accuracy(splits: Splits, subset: torch.Tensor, accepted: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Diagnostics only: how many accepted pseudo-labels match the hidden ground truth."""
    if splits.unlabeled_hidden_y is None or len(accepted) == 0:
        return None
    truth = splits.unlabeled_hidden_y[subset[accepted]]
    return float((truth == labels[accepted]).float().mean())


GALLERY_SIZE = 8  # images per class and end (most and least confident)


def gallery(index: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor, n_classes: int) -> dict:
    """Per class, the accepted count and the GALLERY_SIZE most and least confident accepted images
    (index into the unlabeled images, confidence). Built from what training chose only: the hidden
    labels mark it right or wrong afterwards (mark_gallery)."""
    per_class = []
    for c in range(n_classes):
        mine = (labels == c).nonzero().flatten()
        order = mine[confidence[mine].argsort(descending=True)]
        least = order[GALLERY_SIZE:][-GALLERY_SIZE:].flip(0)  # the least confident first, none shown twice
        per_class.append({"count": len(mine), "most": _entries(order[:GALLERY_SIZE], index, confidence),
                          "least": _entries(least, index, confidence)})  # fmt: skip
    return {"size": GALLERY_SIZE, "per_class": per_class}


def _entries(ids: torch.Tensor, index: torch.Tensor, confidence: torch.Tensor) -> list[list]:
    return [[int(index[i]), round(float(confidence[i]), 4)] for i in ids]


def mark_gallery(gallery: dict, hidden: torch.Tensor | None) -> list[dict]:
    """The gallery with each image marked right (True), wrong (False) or unknown (None, no hidden
    labels) against the hidden labels, and the right/wrong counts of the images shown."""
    out = []
    for c, entry in enumerate(gallery["per_class"]):
        marked = {}
        for end in ("most", "least"):
            marked[end] = [
                {"index": i, "confidence": conf, "right": None if hidden is None else bool(int(hidden[i]) == c)}
                for i, conf in entry[end]
            ]
        shown = [m["right"] for end in ("most", "least") for m in marked[end] if m["right"] is not None]
        right = sum(shown)
        out.append({"class": c, "count": entry["count"], **marked, "right": right, "wrong": len(shown) - right})
    return out
