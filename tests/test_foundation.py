"""The foundation extra's backbones (core.models.foundation): built at random init and from local
checkpoints, never from the network."""

import pytest
import torch

from core.config import TrainConfig
from core.methods.registry import ConfigError, validate
from core.models import REGISTRY, ModelError, create_model, foundation

pytest.importorskip("open_clip", reason="the foundation extra: pip install -e '.[foundation]'")
pytest.importorskip("timm", reason="the foundation extra: pip install -e '.[foundation]'")

FEATURES = {"clip_vit_b32": 512, "dinov2_vits14": 384, "dinov2_vitb14": 768}


def test_every_foundation_tower_is_registered_when_its_library_is_installed():
    assert set(foundation.available()) == set(foundation.FOUNDATION) == set(FEATURES)
    assert set(FEATURES) <= set(REGISTRY)


def test_without_the_library_its_towers_are_not_offered(monkeypatch):
    real = foundation.importlib.util.find_spec
    monkeypatch.setattr(foundation.importlib.util, "find_spec", lambda lib: None if lib == "open_clip" else real(lib))
    assert foundation.available() == ["dinov2_vits14", "dinov2_vitb14"]


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_each_tower_builds_at_random_init_and_gives_its_embedding(name):
    torch.manual_seed(0)
    entry = REGISTRY[name]
    model = create_model(name, num_classes=10, resolution=entry.min_resolution, normalize=True).eval()
    assert model.feature_dim == FEATURES[name]
    with torch.no_grad():
        assert model.features(torch.rand(2, 3, 32, 32)).shape == (2, FEATURES[name])
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    params = sum(p.numel() for p in model.backbone.parameters()) / 1e6
    assert params == pytest.approx(foundation.FOUNDATION[name].params_m, abs=0.1)  # the summary's figure
    # normalize=True uses the statistics the tower was trained with, not ImageNet's
    assert torch.allclose(model.prep.mean.flatten(), torch.tensor(foundation.FOUNDATION[name].mean))
    # "last" fine-tuning trains the last transformer block and the head only
    model.set_trainable("last")
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(".11." in n or "resblocks.11" in n or "blocks.11" in n for n in trainable)


def test_dinov2_runs_at_any_resolution():
    model = create_model("dinov2_vits14", resolution=60).eval()  # not a multiple of 14: padded
    with torch.no_grad():
        assert model.features(torch.rand(1, 3, 32, 32)).shape == (1, 384)


def test_a_whole_published_clip_checkpoint_loads_its_image_tower(tmp_path):
    import open_clip

    torch.manual_seed(3)
    published = open_clip.create_model("ViT-B-32", pretrained=None)  # image and text towers, as released
    path = tmp_path / "clip.pth"
    torch.save(published.state_dict(), path)
    model = create_model("clip_vit_b32", weights=str(path), resolution=224)
    assert torch.equal(model.backbone.conv1.weight, published.visual.conv1.weight)
    assert torch.equal(model.backbone.proj, published.visual.proj)


def test_a_tower_state_dict_loads_and_one_for_another_tower_is_refused(tmp_path):
    torch.manual_seed(4)
    source = foundation.build("dinov2_vits14")
    path = tmp_path / "dino.pth"
    torch.save(source.state_dict(), path)
    model = create_model("dinov2_vits14", weights=str(path), resolution=56)
    assert torch.equal(model.backbone.patch_embed.proj.weight, source.patch_embed.proj.weight)
    with pytest.raises(ModelError, match="another architecture"):
        create_model("dinov2_vitb14", weights=str(path))


@pytest.mark.parametrize("name", ["clip_vit_b32", "dinov2_vits14"])
def test_published_weights_without_network_fail_with_where_to_put_them(name, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # never the network, whatever this machine can reach
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError) as err:
        create_model(name, weights="imagenet", resolution=REGISTRY[name].min_resolution)
    message = str(err.value)
    assert "Hugging Face Hub repository" in message and "--weights FILE.pth" in message and "\n" not in message


def test_configs_with_foundation_towers_are_checked_like_any_backbone():
    cfg = validate(TrainConfig(method="transfer", arch="clip_vit_b32", weights="imagenet", resolution=224,
                               finetune="head", normalize=True))  # fmt: skip
    assert cfg.arch == "clip_vit_b32"
    with pytest.raises(ConfigError, match="224 px only"):
        validate(TrainConfig(method="transfer", arch="clip_vit_b32", weights="imagenet", resolution=64,
                             finetune="head"))  # fmt: skip


def test_the_train_page_and_compare_name_the_towers_pretraining_not_imagenet():
    from core.views.backbones import backbone_facts, published_weights, weights_label

    assert published_weights("clip_vit_b32") == ("CLIP on LAION-2B (image-text pairs) weights (download)",
                                                 "the Hugging Face Hub")  # fmt: skip
    assert published_weights("convnext_tiny")[0] == "torchvision ImageNet weights (download)"
    facts = backbone_facts("dinov2_vits14", 112, None)
    assert "DINOv2 on LVD-142M" in facts and "22.1M parameters" in facts
    assert weights_label("imagenet", "clip_vit_b32").startswith("CLIP on LAION-2B")
    assert weights_label("imagenet", "resnet18") == "ImageNet (torchvision)"
