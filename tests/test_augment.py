import pytest
import torch

from core.data.augment import BatchAugment, preview, to_code
from core.data.pipelines import CATALOG, PRESETS, format_pipeline, parse_pipeline, pipeline_from_json, pipeline_to_json


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(0)
    return torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_in_training(name, images):
    torch.manual_seed(0)
    labels = torch.arange(6) % 3
    x, y = BatchAugment(name, num_classes=3)(images, labels)
    assert x.shape == images.shape and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    if name.endswith(("mixup", "cutmix")):
        assert y.shape == (6, 3) and torch.allclose(y.sum(1), torch.ones(6))
        assert (y.max(1).values < 1).any()  # some labels really are mixed
    else:
        assert torch.equal(y, labels)
    if name == "none":
        assert torch.equal((x * 255).round().to(torch.uint8), images)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_previews_deterministically(name, images):
    a = preview(images[:3], name, k=4, seed=7)
    b = preview(images[:3], name, k=4, seed=7)
    assert a.shape == (3, 4, 3, 32, 32) and a.dtype == torch.uint8
    assert torch.equal(a, b)
    if name != "none":
        assert not torch.equal(a, preview(images[:3], name, k=4, seed=8))


def test_batched_flip_and_crop_do_what_they_say(images):
    torch.manual_seed(0)
    flipped, _ = BatchAugment("hflip(p=1.0)", 3)(images, torch.zeros(6, dtype=torch.long))
    assert torch.equal((flipped * 255).round().to(torch.uint8), images.flip(-1))
    torch.manual_seed(1)
    ones = torch.full((64, 3, 32, 32), 255, dtype=torch.uint8)
    cropped, _ = BatchAugment("crop(padding=4)", 3)(ones, torch.zeros(64, dtype=torch.long))
    zero_fraction = (cropped == 0).float().mean(dim=(1, 2, 3))
    assert (zero_fraction > 0).any() and (zero_fraction < 0.45).all()  # shifted by at most 4 px
    assert len(set(zero_fraction.tolist())) > 3  # each image gets its own offset


def test_erasing_blanks_one_patch_per_image():
    torch.manual_seed(0)
    ones = torch.full((32, 3, 32, 32), 255, dtype=torch.uint8)
    x, _ = BatchAugment("erasing(p=1.0, max_area=0.25)", 3)(ones, torch.zeros(32, dtype=torch.long))
    area = (x[:, 0] == 0).float().mean(dim=(1, 2))
    assert (area > 0).all() and (area <= 0.26).all()


def test_pipeline_text_json_and_code_round_trip(images):
    text = "hflip|crop(padding=2)|randaugment(num_ops=1, magnitude=5)|cutmix(alpha=0.5)"
    steps = parse_pipeline(text)
    assert [s[0] for s in steps] == ["hflip", "crop", "randaugment", "cutmix"]
    assert steps[1][1] == {"padding": 2}
    assert pipeline_from_json(pipeline_to_json(steps)) == steps
    assert parse_pipeline(format_pipeline(steps)) == steps
    code = to_code(text)
    assert "v2.RandomCrop(size=32, padding=2)" in code and "v2.CutMix(alpha=0.5, num_classes=10)" in code
    namespace: dict = {}
    exec(code, namespace)  # the printed code really builds the pipeline
    out = namespace["transform"](images[0])
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


@pytest.mark.parametrize("name", list(CATALOG))
def test_every_catalog_entry_parses_with_defaults_and_renders(name):
    steps = parse_pipeline(name)
    assert steps[0][0] == name and set(steps[0][1]) == set(CATALOG[name].params)
    assert CATALOG[name].code in to_code(name)


@pytest.mark.parametrize(
    "text, words",
    [
        ("warp", ["warp"]),
        ("crop(padding=100)", ["padding", "out of range"]),
        ("crop(pad=3)", ["pad"]),
        ("mixup|hflip", ["last step"]),
        ("crop(padding=__import__('os'))", ["number"]),
    ],
)
def test_bad_pipelines_are_explained(text, words):
    with pytest.raises(ValueError) as err:
        parse_pipeline(text)
    for w in words:
        assert w in str(err.value)


def test_preview_tiles_are_never_below_64_pixels_and_too_wide_rows_are_split():
    from core.data.augment import MIN_TILE, preview_fits, preview_grid

    images = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    for k in (1, 6, 10, 12):
        grid = preview_grid(images, ["hflip"], k)
        assert grid.shape[0] // 2 >= MIN_TILE, k  # two rows of images, each at least MIN_TILE high
    assert preview_fits(6, 2) and not preview_fits(10, 2) and preview_fits(12, 1)
