"""Pseudo-labels: which unlabeled images are used, which predictions are accepted, and the
self-training rounds on frozen features that self-training and label spreading share.

The hidden labels of the unlabeled images are read only to report pseudo-label accuracy, after the
pseudo-labels are chosen: scrambling them changes no number that training produces.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch

from core.data import Splits
from core.engine import predict
from core.frozen import StandardizedHead, feature_cache, labeled_and_test_features, train_head
from core.method import Outcome, RunContext, finish

# (round, head's probabilities on the pool, labeled features, unlabeled features) -> (probabilities, cap)
Proposer = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, int]]


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


def curriculum(per_class: int) -> Proposer:
    """Self-training: the head's own predictions; the pool grows by per_class per class each round."""

    def propose(r: int, probs: torch.Tensor, lab_f: torch.Tensor, unl_f: torch.Tensor) -> tuple[torch.Tensor, int]:
        return probs, per_class * (r + 1) if per_class else 0

    return propose


def self_train(ctx: RunContext, propose: Proposer) -> Outcome:
    """Round 0 fits the head on the labeled images (the supervised probe); each further round refits
    it afresh on the labeled images plus the pseudo-labels that `propose` accepted."""
    cfg, s, n = ctx.cfg, ctx.splits, ctx.n_classes
    t0 = time.perf_counter()
    subset = unlabeled_subset(s, cfg.n_unlabeled)
    features = feature_cache(cfg, s, ctx.model, ctx.device, ctx.bf16, ctx.cache_dir, ctx.progress, ctx.should_stop)
    lab_f, lab_y, test_f = labeled_and_test_features(cfg, s, features)
    unl_f = features(s.unlabeled_x[subset], "unlabeled images", *unlabeled_key(subset))
    features_s = time.perf_counter() - t0
    # Standardise with the statistics of all images the method may see (labeled and unlabeled).
    pool = torch.cat([lab_f, unl_f])
    mean, std = pool.mean(0), pool.std(0) + 1e-6
    head_init = copy.deepcopy(ctx.model.head.state_dict())
    head = StandardizedHead(ctx.model.head, mean, std).to(ctx.device)

    accepted = torch.empty(0, dtype=torch.long)
    pseudo = torch.empty(0, dtype=torch.long)
    confidence = torch.empty(0)
    rounds, history = [], []
    status, message = "finished", ""
    round_cfg = cfg.with_(eval_every=0)
    for r in range(cfg.rounds + 1):
        ctx.model.head.load_state_dict(head_init)  # each round fits the head afresh: no confirmation drift
        x = torch.cat([lab_f, unl_f[accepted]])
        y = torch.cat([lab_y, pseudo[accepted]]) if len(accepted) else lab_y
        loop = train_head(head, x, y, round_cfg, ctx.device, should_stop=ctx.should_stop)
        if loop.status != "finished":
            status, message = loop.status, f"round {r}: {loop.message}"
            break
        probs = predict(head, unl_f, ctx.device, False, uint8_images=False).softmax(1)
        test_logits = predict(head, test_f, ctx.device, False, uint8_images=False)
        test_acc = float((test_logits.argmax(1) == s.test_y).float().mean())
        rounds.append({
            "round": r,
            "accepted": len(accepted),
            "pseudo_acc": pseudo_accuracy(s, subset, accepted, pseudo),
            "per_class": torch.bincount(pseudo[accepted], minlength=n).tolist() if len(accepted) else [0] * n,
            "test_acc": test_acc,
        })  # fmt: skip
        row = loop.history[-1] | {"index": r + 1, "unit": "round", "seconds": time.perf_counter() - t0,
                                  "test_acc": test_acc, "accepted": len(accepted)}  # fmt: skip
        history.append(row)
        ctx.emit(row)
        if r == cfg.rounds:
            break
        try:
            probs, cap = propose(r, probs, lab_f[: len(s.labeled_y)], unl_f)
        except InterruptedError as err:
            status, message = "stopped", str(err)
            break
        confidence, pseudo = probs.max(1)
        accepted = select_pseudo_labels(probs, cfg.threshold, cap)
    timings = {"train_s": time.perf_counter() - t0, "features_s": features_s}
    last = rounds[-1] if rounds else {}
    diagnostics = {
        "algorithm": cfg.method,
        "rounds": rounds,
        "final_count": last.get("accepted", 0),
        "final_acc": last.get("pseudo_acc"),
        "supervised_test_acc": rounds[0]["test_acc"] if rounds else None,
        "gallery": gallery(subset[accepted], pseudo[accepted], confidence[accepted], n) if len(accepted) else None,
    }
    return finish(ctx, status, message, history, head, test_inputs=test_f, train_inputs=lab_f[: len(s.labeled_y)],
                  images=False, timings=timings, diagnostics=diagnostics)  # fmt: skip
