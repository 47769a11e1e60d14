"""The principal directions of many vectors: their covariance summed in float64, one chunk of rows at a
time, then its eigendecomposition. Shared by the whitened stem (the 2x2 patches of the labeled images,
core.models.convnet_cifar) and the kNN graph (the features of 50,000 images, core.methods.knn_graph): memory stays
that of one chunk however many rows there are, and float64 keeps the weakest directions exact."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def covariance_spectrum(chunks: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, eigenvalues in ascending order, eigenvectors as columns) of the covariance of the rows of
    all the chunks (each rows x dim), all float64."""
    total, outer, count = 0.0, 0.0, 0  # become float64 tensors with the first chunk
    for rows in chunks:
        rows = rows.double()
        total = total + rows.sum(0)
        outer = outer + rows.T @ rows
        count += len(rows)
    if count == 0:
        raise ValueError("covariance_spectrum needs at least one row")
    mean = total / count
    values, vectors = torch.linalg.eigh((outer - count * torch.outer(mean, mean)) / max(count - 1, 1))
    return mean, values, vectors
