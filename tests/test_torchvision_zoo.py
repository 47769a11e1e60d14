"""Every torchvision classifier as a backbone (core.models.torchvision_zoo): found through torchvision's own
registry, split generically, loaded offline from a local file. Never the network."""

import contextlib
from unittest import mock

import pytest
import torch
import torchvision
from torch import nn

from core.config import ConfigError, TrainConfig
from core.methods.registry import validate
from core.models import REGISTRY, ModelError, create_model, feature_dim, state_dict_bytes
from core.models import torchvision_zoo as zoo
from core.views.backbones import backbone_facts, pretraining_frame
from core.views.charts import accuracy_bars, accuracy_summary

CLASSIFIERS = zoo.torchvision_classifiers()
# Random initialisation and a forward pass grow with the network (ViT-H/14: 11 s and 18 s at its 518 px,
# RegNet-Y-128GF: 12 s). The fast tier builds the networks up to MEDIUM parameters as they are; the full suite the
# ones up to LARGE too, on the CPU with torch's initialisers skipped (their values do not matter here, their shapes
# do: the file took 72 s with them, 29 s without), and the largest (ViT-L and -H, ConvNeXt-L, VGG...; the same
# builders at larger widths) on the meta device: built and run shape for shape, with no values.
MEDIUM, LARGE = 15e6, 100e6


def backbone_cases():
    for name in CLASSIFIERS:
        marks = [pytest.mark.slow] if zoo.weights_info(name).params > MEDIUM else []
        yield pytest.param(name, marks=marks, id=name)


@contextlib.contextmanager
def built_where(name):
    """The device a network of this size is built and run on in the suite: "cpu", or "meta"; past MEDIUM with
    torch's initialisers skipped. RegNet's builder reads its own tensors, so the largest RegNets stay on the CPU
    that way too."""
    params = zoo.weights_info(name).params
    if params <= MEDIUM:
        yield "cpu"
    elif params <= LARGE or name.startswith("regnet_"):
        with mock.patch.multiple(nn.init, **{f: _no_init for f in SKIPPED_INITS}):
            yield "cpu"
    else:
        with torch.device("meta"):
            yield "meta"


def _no_init(*args, **kwargs):
    """An initialiser that leaves its tensor as allocated (some builders name it: `tensor=`)."""
    return args[0] if args else kwargs["tensor"]


SKIPPED_INITS = ("kaiming_normal_", "kaiming_uniform_", "normal_", "uniform_", "zeros_", "ones_", "trunc_normal_",
                 "xavier_uniform_", "constant_")  # fmt: skip


def test_the_registry_holds_every_torchvision_classifier_and_only_classifiers():
    assert len(CLASSIFIERS) >= 80
    assert {"resnet50", "convnext_tiny", "efficientnet_v2_s", "regnet_y_400mf", "vit_b_16", "swin_t"} <= set(
        CLASSIFIERS
    )
    assert set(CLASSIFIERS) <= set(REGISTRY)
    assert not {"fasterrcnn_resnet50_fpn", "deeplabv3_resnet50", "r3d_18"} & set(CLASSIFIERS)


@pytest.mark.parametrize("name", backbone_cases())
def test_every_backbone_split_builds_at_random_init_and_runs_on_32px_images(name):
    """The generic split drops the 1,000-class layer and keeps what feeds it; networks with a fixed or
    minimum input size get it through the model's own upsampling (the resolution setting)."""
    torch.manual_seed(0)
    with built_where(name) as device, torch.no_grad():
        model = create_model(name, num_classes=10, resolution=max(32, REGISTRY[name].min_resolution)).eval()
        assert not any(
            getattr(m, "out_features", getattr(m, "out_channels", 0)) == zoo.IMAGENET_CLASSES for m in model.modules()
        ), "the ImageNet classification layer is still there"
        features = model.features(torch.rand(1, 3, 32, 32))
        assert features.shape == (1, model.feature_dim) and features.device.type == device
        assert model.head(features).shape == (1, 10) and model.head.in_features == model.feature_dim
        assert feature_dim(name) == model.feature_dim  # read from a meta-device build, with no weights
        assert state_dict_bytes(name) == sum(t.numel() * t.element_size() for t in model.state_dict().values())


@pytest.mark.parametrize("name", ["convnext_tiny", "efficientnet_v2_s", "regnet_y_400mf", "squeezenet1_1"])
def test_last_fine_tuning_trains_the_trailing_tenth_of_the_weights_and_the_head(name):
    torch.manual_seed(0)
    model = create_model(name)
    model.set_trainable("last")
    trained = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.backbone.parameters())
    assert zoo.LAST_SHARE * total <= trained < 0.6 * total
    assert all(p.requires_grad for p in model.head.parameters())
    model.set_trainable("head")
    assert not any(p.requires_grad for p in model.backbone.parameters())


def test_weights_info_is_read_from_torchvision_metadata_without_a_download():
    info = zoo.weights_info("convnext_tiny")
    assert info.name == "ConvNeXt_Tiny_Weights.IMAGENET1K_V1"
    assert 80 < info.top1 < 84 and 28e6 < info.params < 29e6 and not info.fixed_size
    assert info.file_name.endswith(".pth") and info.url.startswith("https://")
    assert zoo.weights_info("vit_b_16").fixed_size and zoo.weights_info("vit_b_16").min_size == 224
    assert "ImageNet top-1 82.5%" in zoo.summary("convnext_tiny")


def test_imagenet_weights_load_from_torchs_cache_with_no_network(tmp_path, monkeypatch):
    """What torchvision's download would leave in <torch hub>/checkpoints: found there, never fetched."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)  # a download would fail the test
    torch.manual_seed(3)
    source = torchvision.models.squeezenet1_1()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(source.state_dict(), tmp_path / "hub" / "checkpoints" / zoo.weights_info("squeezenet1_1").file_name)
    model = create_model("squeezenet1_1", weights="imagenet")
    torch.testing.assert_close(model.backbone.features[0].weight, source.features[0].weight)
    assert model.head.out_features == 10


def test_a_failed_download_says_in_one_line_which_file_to_put_where(tmp_path, monkeypatch):
    def offline(url, dst, *args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelError) as caught:
        create_model("convnext_tiny", weights="imagenet")
    message = str(caught.value)
    assert "\n" not in message and "OSError" in message
    info = zoo.weights_info("convnext_tiny")
    assert f"put {info.file_name} (from {info.url}) in {tmp_path / 'hub' / 'checkpoints'}" in message
    assert "--weights FILE.pth" in message


def transfer(**kw) -> TrainConfig:
    return TrainConfig(**{"method": "transfer", "weights": "imagenet", "finetune": "head", "epochs": 5} | kw)


def test_validate_accepts_a_torchvision_backbone_and_checks_its_input_size():
    assert validate(transfer(arch="convnext_tiny")).arch == "convnext_tiny"
    assert validate(transfer(arch="vit_b_16", resolution=224)).resolution == 224
    with pytest.raises(ConfigError, match="runs at 224 px only .* set resolution=224"):
        validate(transfer(arch="vit_b_16", resolution=32))
    with pytest.raises(ConfigError, match="too small for arch=inception_v3: it needs at least 75 px"):
        validate(transfer(arch="inception_v3", resolution=32))
    with pytest.raises(ConfigError, match="arch='vit_huge' is unknown"):
        validate(transfer(arch="vit_huge"))


def test_classification_layer_is_the_last_one_with_a_thousand_outputs():
    mixed = nn.Sequential(nn.Linear(8, 1000), nn.ReLU(), nn.Linear(1000, 4), nn.Linear(4, 1000))
    assert zoo.classification_layer(mixed)[0] == "3"
    with pytest.raises(ValueError, match="no layer with 1000 outputs"):
        zoo.classification_layer(nn.Linear(3, 10))


def test_the_train_pages_line_about_a_backbone_reads_metadata_and_the_measured_speed():
    line = backbone_facts("convnext_tiny", 64, 0.004)
    assert "ImageNet top-1 82.5% (ConvNeXt_Tiny_Weights.IMAGENET1K_V1, at 32 px)" in line
    assert "28.6M parameters" in line and "this machine: 250 images/s at 64 px (measured)" in line
    assert "measured with the estimate below" in backbone_facts("resnet18_cifar", 32, None)
    assert "no ImageNet weights" in backbone_facts("resnet18_cifar", 32, None)


def test_what_pretraining_buys_pools_seeds_per_backbone_and_never_shows_a_server_path():
    from tests.test_store import record

    runs = []
    for i, (arch, weights, acc) in enumerate(
        [("mobilenet_v2", "imagenet", 0.5), ("mobilenet_v2", "imagenet", 0.54), ("mobilenet_v2", "", 0.2),
         ("resnet18", "/srv/lab/weights/r18.pth", 0.4), ("resnet18", "/srv/lab/weights/r18.pth", 0.42)]
    ):  # fmt: skip
        run = record(f"r{i}", acc, seed=i)
        run.config = run.config.with_(method="transfer", arch=arch, weights=weights, finetune="head")
        runs.append(run)
    runs.append(record("scratch", 0.9))  # not a transfer run: not in this view
    frame = pretraining_frame(runs)
    summary = accuracy_summary(frame).set_index("configuration")
    assert len(summary) == 3 and not any("/srv" in label for label in summary.index)
    imagenet = summary.loc["mobilenet_v2 · ImageNet (torchvision) · head · 32 px"]
    assert imagenet["runs"] == 2 and abs(imagenet["mean"] - 0.52) < 1e-9 and imagenet["std"] > 0.02
    assert summary.loc["resnet18 · file r18.pth · head · 32 px"]["runs"] == 2
    assert [layer["mark"]["type"] for layer in accuracy_bars(frame).to_dict()["layer"]] == ["bar", "rule", "circle"]
