"""What many seeds trained at once need beyond the loop (core.engine.loop.train_lanes): each seed's own
RNG state, and BatchNorm in plain operations where vmap cannot batch the fused kernel."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class RngState:
    """One seed's copy of the global RNG state (CPU, and the GPU's when it trains there)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.gpu = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @contextmanager
    def active(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=[self.device] if self.gpu is not None else []):
            torch.set_rng_state(self.cpu)
            if self.gpu is not None:
                torch.cuda.set_rng_state(self.gpu, self.device)
            yield
            self.cpu = torch.get_rng_state()
            if self.gpu is not None:
                self.gpu = torch.cuda.get_rng_state(self.device)


class StackingUnsupported(RuntimeError):
    """The first stacked step failed on this device: the seeds train one after another instead."""


def batch_norm_in_plain_ops(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """What nn.BatchNorm2d computes (batch statistics and a running-average update in training, the
    running statistics in evaluation), in elementwise operations and reductions that vmap batches on any
    device. On a GPU, vmap sends batch_norm itself to cuDNN's path, which torch 2.11 cannot batch: on an
    H200 it failed with "NYI: querying is_contiguous inside of vmap" in float32 and "Expected running_mean
    to have type BFloat16" in bfloat16's backward. Statistics in float32 whatever the input's precision."""
    if bn.momentum is None:
        raise StackingUnsupported("BatchNorm with momentum=None (a cumulative average) cannot stack")
    xf, dims, shape = x.float(), [0, *range(2, x.dim())], (1, -1) + (1,) * (x.dim() - 2)
    if bn.training or bn.running_mean is None:
        mean, var = xf.mean(dims), xf.var(dims, unbiased=False)
        if bn.training and bn.running_mean is not None:
            n = xf.numel() / xf.shape[1]
            with torch.no_grad():
                m = bn.momentum  # running <- (1 - m) running + m batch (lerp_ has no batching rule)
                bn.running_mean.mul_(1 - m).add_(mean.detach() * m)
                bn.running_var.mul_(1 - m).add_(var.detach() * (m * n / max(n - 1, 1)))
                bn.num_batches_tracked.add_(1)
    else:
        mean, var = bn.running_mean, bn.running_var
    y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    return y.to(x.dtype)


@contextmanager
def plain_batch_norm(model: nn.Module, active: bool) -> Iterator[None]:
    """model's BatchNorm layers compute with batch_norm_in_plain_ops while active, as they were after."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if active else []
    for m in layers:
        m.forward = lambda x, m=m: batch_norm_in_plain_ops(m, x)
    try:
        yield
    finally:
        for m in layers:
            del m.forward  # back to the class's own forward
