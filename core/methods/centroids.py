"""Heads computed, not trained, on frozen features: each class is the mean of its labeled images' features, and an
image goes to the class whose mean points most nearly its way (classifier=centroids), optionally through the shrunk
inverse of the classes' shared covariance (classifier=lda). With 10 images a class nothing trained can overfit them.

Used by the transfer method with finetune="head" (core.methods.transfer) and by the estimate's probe of its pass.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from core.engine.loop import LoopResult, RowFn, epoch_row
from core.methods.frozen import StandardizedHead, signed_power

# Cosine similarities of about 0.1-0.3 apart, times this, give logits 1-3 apart: probabilities a person can read.
CENTROID_SHARPNESS = 10.0
# The centroids compare the features' signed square roots (signed_power). On all 49,900 unlabeled images as the
# validation split, mobilenet_v2_stages at 160 px, flip-averaged: 53.48% as they come; powers 0.7 / 0.6 / 0.5 /
# 0.4 / 0.3 / 0.2: 53.75 / 53.84 / 53.95 / 54.04 / 54.07 / 54.13%. At 128 px: 51.35% as they come, 51.62 / 51.71
# / 51.85 / 51.92 / 51.76 / 51.74%. Flat within 0.2 points from 0.2 to 0.5: the plain square root.
CENTROID_POWER = 0.5


# How much of the classes' shared covariance the centroid head's directions account for (shrinkage LDA): each class's
# direction is the within-class covariance's inverse times its mean, the covariance shrunk to a sphere (weight
# 1 - LDA_COVARIANCE) since 100 images cannot estimate 1,920 dimensions' covariance. On all 49,900 unlabeled images as
# the validation split (mobilenet_v2_stages, 160 px, flip-averaged, signed square roots): 53.95% at 0 (the plain
# class means), 56.07 / 56.25 / 56.33 / 56.29% at 0.1 / 0.07 / 0.05 / 0.03; over 6 other draws of 100 labels, each
# scored on 20,000 pool images, 53.58% at 0 and 56.66 / 56.77 / 56.75 / 56.61%. At 128 px with the mirror images
# 51.85% -> 52.86%, at 160 px without them 53.21% -> 54.60%, at 224 px 49.55% -> 51.85%. LDA's own scores (its
# bias terms, no normalised directions) lost at the same shrinkages: 49.3-51.6% there.
LDA_COVARIANCE = 0.05
# Its directions line up less with the features' large directions, so its logits come out smaller: times 15, not 10,
# they read as probabilities that fit (the lowest cross-entropy on the validation split, 1.226 against 1.232 at 13
# and 1.239 at 17; the mean top probability 0.59 for 56% right; at 10, 0.45).
LDA_SHARPNESS = 15.0


def centroid_head(
    head: nn.Linear, features: torch.Tensor, labels: torch.Tensor, covariance: float = 0.0
) -> StandardizedHead:
    """Nearest class mean as a linear head: the features centred on their mean, each class's row the unit
    direction of its centred mean. For each image, argmax of the logits is the class whose mean has the largest
    cosine similarity with it (the image's own length scales every logit alike). Standardised by one number, the
    features' mean length (over CENTROID_SHARPNESS), instead of each feature's spread: dividing each feature by
    its own spread over 100 images blows up the ones that barely vary.

    covariance > 0 (classifier=lda): each direction is first multiplied by the inverse of the classes' shared
    covariance, shrunk towards a sphere (shrunk_inverse): directions in which images of one class vary a lot count
    less. LDA_COVARIANCE says how much it buys.

    On the validation split (all 49,900 unlabeled images and their hidden labels; transfer reads none of them),
    mobilenet_v2_stages at 160 px, flip-averaged: 53.5% against 51.1% for the trained linear head (3 seeds).
    A class without images gets a zero row. Every feature is first replaced by its signed square root
    (CENTROID_POWER says why)."""
    features = signed_power(features, CENTROID_POWER)
    mean = features.mean(0)
    centred = features - mean
    counts = torch.bincount(labels, minlength=head.out_features).clamp(min=1)
    means = torch.zeros(head.out_features, features.shape[1]).index_add_(0, labels, centred) / counts[:, None]
    directions = shrunk_inverse(centred - means[labels], means, covariance) if covariance > 0 else means
    with torch.no_grad():
        head.weight.copy_(F.normalize(directions, dim=1).to(head.weight))
        head.bias.zero_()
    sharpness = LDA_SHARPNESS if covariance > 0 else CENTROID_SHARPNESS
    spread = torch.full_like(mean, float(centred.norm(dim=1).mean()) / sharpness)
    return StandardizedHead(head, mean, spread, power=CENTROID_POWER)


def shrunk_inverse(residuals: torch.Tensor, targets: torch.Tensor, covariance: float) -> torch.Tensor:
    """targets (k x d) times the inverse of S = covariance * C + (1 - covariance) * s * I, where C = R^T R / n is the
    covariance of the residuals R (n x d, each image minus its class mean) and s their mean variance (the
    sphere with C's trace). With n < d, through the n x n matrix (Woodbury): 100 labeled images and 1,920 features
    solve a 100 x 100 system, not a 1,920 x 1,920 one."""
    r = residuals.double()
    n, d = r.shape
    sphere = float(r.square().sum()) / (n * d)
    sphere = sphere if sphere > 0 else 1.0  # one image a class: no residual, the plain class means
    t = targets.double()
    ridge = (1 - covariance) * sphere  # S = (covariance / n) R^T R + ridge I
    if n < d:
        # S^-1 t = (t - R^T (ridge n / covariance I + R R^T)^-1 R t) / ridge
        inner = r @ r.T + (ridge * n / covariance) * torch.eye(n, dtype=r.dtype)
        solved = (t - (r.T @ torch.linalg.solve(inner, r @ t.T)).T) / ridge
    else:
        s = (covariance / n) * (r.T @ r) + ridge * torch.eye(d, dtype=r.dtype)
        solved = torch.linalg.solve(s, t.T).T
    return solved.float()


def fit_centroids(
    head: nn.Linear,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    covariance: float = 0.0,
    on_row: RowFn | None = None,
) -> tuple[StandardizedHead, LoopResult]:
    """The centroid head (no optimiser, nothing to stop) and its one history row, as train_loop reports an epoch."""
    t = time.perf_counter()
    fitted = centroid_head(head, features, labels, covariance)
    with torch.no_grad():
        logits = fitted(features.to(head.weight.device)).cpu()
    loss = float(F.cross_entropy(logits, labels, reduction="sum"))
    right = float((logits.argmax(1) == labels).sum())
    row = epoch_row(1, loss, right, len(labels), 0.0, time.perf_counter() - t)
    row["test_acc"] = None  # a frozen head is tested once, at the end (core.methods.base.finish)
    if on_row:
        on_row(row)
    return fitted, LoopResult("finished", [row])
