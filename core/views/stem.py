"""The whitened stem, shown: what the first layer of the scratch preset's network computes from the 100
labeled images before any training, and what it does to an image (the Why page's "Whitened stem" tab).

Photos vary mostly in brightness: neighbouring pixels and the three colours move together. The 2x2
patches of the labeled images have 12 directions of variance, and the first one (overall brightness)
holds most of it. A learned first layer spends its first epochs discovering edges and colour contrasts
in the weak directions; the whitening filters start there, every direction scaled to unit variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.models.convnet_cifar import filters_from_spectrum, patch_spectrum


@dataclass(frozen=True)
class StemView:
    variances: list[float]  # of the 12 patch directions, largest first
    filters: np.ndarray  # 12 x 2 x 2 x 3 uint8: each filter as a 2x2 colour picture (grey is zero)
    channels: np.ndarray  # 12 x (H-1) x (W-1) uint8: the image through each filter (grey is zero)


def stem_view(images: torch.Tensor, index: int) -> StemView:
    """The patch spectrum and whitening filters of uint8 images (N x 3 x H x W), largest variance first,
    and image `index` through each filter."""
    x = images.float() / 255
    values, vectors = patch_spectrum(x)
    filters = filters_from_spectrum(values, vectors).flip(0)  # eigh sorts ascending; the largest reads first
    out = torch.nn.functional.conv2d(x[index : index + 1] - x.mean((0, 2, 3)).view(1, 3, 1, 1), filters)[0]
    return StemView(values.flip(0).tolist(), _as_picture(filters).permute(0, 2, 3, 1).numpy(), _as_picture(out).numpy())


def _as_picture(t: torch.Tensor) -> torch.Tensor:
    """Signed values as uint8 pictures, each slice scaled on its own: 128 is zero, 0 and 255 the extremes."""
    scale = t.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, *[1] * (t.dim() - 1))
    return (128 + 127 * t / scale).round().to(torch.uint8)
