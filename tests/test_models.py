import pickle

import pytest
import torch
import torchvision

from core.models import ModelError, create_model, foundation, list_models, weights_id
from core.models.torchvision_zoo import torchvision_classifiers

# The hand-written entries and plug-ins; every other torchvision classifier: tests/test_torchvision_zoo.py; the
# foundation extra's towers: tests/test_foundation.py.
OTHERS = set(torchvision_classifiers()) | set(foundation.FOUNDATION)
HAND_WRITTEN = [name for name in list_models() if name not in OTHERS or name == "resnet18"]


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_every_model_gives_ten_logits_on_32px(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
        assert model.features(torch.rand(2, 3, 32, 32)).shape == (2, model.feature_dim)


def test_resnet18_cifar_keeps_32px_resolution_in_its_stem():
    model = create_model("resnet18_cifar")
    stem = model.backbone.conv1
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())


def test_resolution_upsamples_inside_the_model():
    model = create_model("mobilenet_v2", resolution=64, normalize=True)
    seen = {}
    model.backbone.register_forward_pre_hook(lambda m, args: seen.update(shape=args[0].shape))
    model.eval()(torch.rand(1, 3, 32, 32))
    assert seen["shape"] == (1, 3, 64, 64)


def test_local_checkpoint_loads_and_heads_are_fresh(tmp_path):
    torch.manual_seed(1)
    source = torchvision.models.mobilenet_v2()
    path = tmp_path / "mnv2.pth"
    torch.save(source.state_dict(), path)
    model = create_model("mobilenet_v2", weights=str(path))
    assert torch.equal(model.backbone[0][0][0].weight, source.features[0][0].weight)
    assert model.head.out_features == 10
    assert len(weights_id(str(path))) == 16


def test_checkpoint_for_another_architecture_is_refused(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(ModelError, match="another architecture"):
        create_model("mobilenet_v2", weights=str(path))


def test_pickle_payload_in_weights_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"x": Payload()}, f)
    with pytest.raises(ModelError, match="weights_only"):
        create_model("mobilenet_v2", weights=str(path))


@pytest.mark.parametrize("finetune", ["head", "last", "all"])
def test_frozen_parameters_stay_frozen(finetune):
    torch.manual_seed(0)
    model = create_model("resnet18_cifar")
    model.set_trainable(finetune)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.eval()  # BN statistics aside, only gradients may change weights
    loss = model(torch.rand(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "head.weight" in changed
    assert ("backbone.conv1.weight" in changed) == (finetune == "all")
    assert ("backbone.layer4.1.conv2.weight" in changed) == (finetune in ("last", "all"))


def test_unknown_model():
    with pytest.raises(ModelError, match="resnet18_cifar"):
        create_model("vit_huge")


def test_five_stage_mobilenet_v2_ends_with_the_plain_ones_features(tmp_path):
    """Same weights file: the last 1,280 of its 1,920 features are mobilenet_v2's pooled features."""
    torch.manual_seed(0)
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), path)
    plain = create_model("mobilenet_v2", weights=str(path), resolution=64).eval()
    stages = create_model("mobilenet_v2_stages", weights=str(path), resolution=64).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ours = stages.features(x)
        assert ours.shape == (2, 1920)
        torch.testing.assert_close(ours[:, -1280:], plain.features(x))


def correlated_images(n: int = 40) -> torch.Tensor:
    """Smooth, colour-correlated uint8 images: neighbouring pixels and channels move together, as in photos."""
    torch.manual_seed(0)
    grey = torch.nn.functional.interpolate(torch.rand(n, 1, 8, 8), size=32, mode="bilinear", align_corners=False)
    colour = grey + 0.1 * torch.rand(n, 3, 32, 32)
    return (colour / colour.amax() * 255).to(torch.uint8)


def test_whitening_filters_make_the_patches_uncorrelated_with_unit_variance():
    from core.models.convnet_cifar import whitening_filters

    x = correlated_images().float() / 255
    out = torch.nn.functional.conv2d(x.double(), whitening_filters(x, eps=1e-9, chunk=7).double())  # chunked sums
    flat = out.permute(1, 0, 2, 3).reshape(12, -1)
    assert torch.allclose(torch.cov(flat), torch.eye(12, dtype=torch.float64), atol=1e-3)
    raw = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(1, 4, 5, 0, 2, 3).reshape(12, -1)
    assert torch.cov(raw).diagonal().max() < 0.2  # the patches themselves were far from white


def test_a_whitened_stem_is_computed_from_the_images_and_frozen():
    images = correlated_images()
    model = create_model("convnet_cifar")
    model.set_trainable("all")
    stem = model.backbone.stem[0]
    model.whiten_stem(images)
    w = stem.weight
    assert torch.equal(w[:12], -w[12:]) and not stem.bias.any()
    assert not stem.weight.requires_grad and not stem.bias.requires_grad
    assert model.backbone.block1.conv1.weight.requires_grad
    with pytest.raises(AttributeError):
        create_model("resnet18_cifar").whiten_stem(images)


def test_mirror_test_time_augmentation_averages_an_image_and_its_mirror_in_eval_mode_only():
    torch.manual_seed(0)
    model = create_model("convnet_cifar")
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        for _ in range(30):  # BatchNorm statistics of real activations: a fresh network's outputs barely differ
            model(torch.rand(8, 3, 32, 32))
        model.eval()
        plain, mirrored = model(x), model(x.flip(3))
        model.flip_test = True
        assert torch.allclose(model(x), (plain + mirrored) / 2, atol=1e-6)
        assert not torch.allclose(model(x), plain, atol=1e-4)
        model.train()  # training sees each augmented image as it is
        assert torch.allclose(model.head(model.features(x)), model(x), atol=1e-6)
