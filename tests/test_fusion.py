"""BatchNorm folded into convolutions for inference (core.engine.fusion): the same outputs, no BatchNorm
left, the original network untouched, and whatever cannot be folded runs as it is."""

from __future__ import annotations

import torch
from torch import nn

from core.engine.fusion import fold_batchnorm, for_inference, has_batchnorm
from core.engine.predict import predict
from core.methods.frozen import extract
from core.models import create_model
from tests.plugins import TINY


def trained_statistics(model: nn.Module) -> nn.Module:
    """BatchNorm layers with statistics and affine weights that are not the identity (a fresh layer's
    running mean 0 and variance 1 would hide a folding that forgot them)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.3, 3)
                m.weight.uniform_(0.5, 2)
                m.bias.uniform_(-1, 1)
    return model.eval()


def test_a_folded_network_gives_the_same_outputs_without_batchnorm_and_leaves_the_original_alone():
    model = trained_statistics(create_model("resnet18_cifar", 10))
    x = torch.rand(4, 3, 32, 32)
    folded = for_inference(model)
    assert has_batchnorm(model) and not has_batchnorm(folded)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    # training the original afterwards does not reach the folded copy, and the head is the model's own
    assert folded.head is model.head
    before = folded(x).detach()
    with torch.no_grad():
        model.backbone.conv1.weight.add_(1.0)
    torch.testing.assert_close(folded(x).detach(), before)


def test_folding_draws_nothing_from_the_random_generator():
    """A cold run extracts features and a cached one does not: folding must not move the seed's stream."""
    model = trained_statistics(create_model("resnet18_cifar", 10))
    torch.manual_seed(3)
    for_inference(model)
    after_folding = torch.rand(3)
    torch.manual_seed(3)
    torch.testing.assert_close(after_folding, torch.rand(3))


def test_a_network_in_training_mode_or_without_batchnorm_is_not_copied():
    model = create_model(TINY, 10).train()
    assert for_inference(model) is model  # training mode: BatchNorm normalises each batch with its own statistics
    head = nn.Linear(8, 3)
    assert fold_batchnorm(head) is head


def test_a_network_that_cannot_be_traced_runs_as_it_is():
    class Branching(nn.Module):  # control flow on a tensor's value: torch.fx cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    model = Branching().eval()
    assert fold_batchnorm(model) is model


def test_the_folded_copy_keeps_the_channels_last_layout_runs_are_placed_in():
    model = trained_statistics(create_model(TINY, 10)).to(memory_format=torch.channels_last)
    conv = next(m for m in for_inference(model).backbone.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_extraction_and_prediction_use_the_folded_network_and_agree_with_the_plain_one():
    model = trained_statistics(create_model("resnet18_cifar", 10))
    images = (torch.rand(6, 3, 32, 32) * 255).to(torch.uint8)
    cpu = torch.device("cpu")
    with torch.no_grad():
        plain_features = model.features(images.float() / 255)
        plain_logits = model(images.float() / 255)
    torch.testing.assert_close(extract(model, images, device=cpu, bf16=False), plain_features, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(predict(model, images, cpu, False), plain_logits, rtol=1e-4, atol=1e-4)
    assert not model.training and has_batchnorm(model)  # the model itself was not folded
