"""Networks for inference: each BatchNorm folded into the convolution before it.

In evaluation mode a BatchNorm layer is a fixed scale and shift per channel, so it can be folded into the
weights and bias of the convolution that feeds it: one layer less to run, the same outputs (to 2e-6 of their
largest value on MobileNetV2). Under bf16 autocast on the CPU it pays more than the layer count says, since
BatchNorm runs in float32 with a cast of its input and output. Measured on a 2-core Xeon with AMX, 256 images
through `core.methods.frozen.extract`, two rounds each, plain against folded: mobilenet_v2_stages at 160 px
169-206 against 283-321 images/s, resnet18 at 128 px 266-277 against 290-312, regnet_y_400mf 589-603 against
700-703, convnext_tiny (no BatchNorm) unchanged.

torch.fx finds the pairs from the traced graph (a convolution whose only user is a BatchNorm), so that a module
that merely declares a convolution beside a BatchNorm is never folded wrongly. A network that fx cannot trace
runs as it is.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from core.models import SmallDataNet


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """A copy of module with its BatchNorm layers folded into their convolutions; module itself where it is in
    training mode (BatchNorm then normalises with each batch's own statistics), has no BatchNorm, or cannot be
    traced. The module is never changed."""
    if module.training or not has_batchnorm(module):
        return module
    try:
        folded = fuse(module)  # inplace=False: a deep copy is folded
    except Exception:  # data-dependent control flow, an untraceable call: the network as it is, just slower
        return module
    if channels_last(module):  # the folded weights are new tensors: keep the layout the network was placed in
        folded.to(memory_format=torch.channels_last)
    return folded


def channels_last(module: nn.Module) -> bool:
    return any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in module.parameters())  # fmt: skip


def for_inference(model: nn.Module) -> nn.Module:
    """model for evaluation-mode forward passes: a SmallDataNet's backbone folded (its input adapter, whose
    resizing depends on the input's shape, and its head stay as they are, shared); any other module folded
    whole where it can be. The result shares no state that inference changes, and training `model` afterwards
    does not change it: call this again after the weights move."""
    if not isinstance(model, SmallDataNet):
        return fold_batchnorm(model)
    backbone = fold_batchnorm(model.backbone)
    if backbone is model.backbone:
        return model
    # A shallow copy with a table of submodules of its own: the same input adapter and head, the folded backbone.
    # Not a new SmallDataNet: its fresh head would draw from the global RNG, and a cold run (which extracts
    # features) would then train differently from a cached one.
    folded = copy.copy(model)
    folded._modules = dict(model._modules)
    folded.backbone = backbone
    return folded
