"""The torchvision code the Data page gives to copy runs as it is pasted: for every augmentation preset and
a custom pipeline, on PIL images (what torchvision.datasets.CIFAR10 yields) and on uint8 tensors, through a
DataLoader over a torchvision-style dataset (one that applies `transform` to each image)."""

import numpy as np
import pytest
import torch
from PIL import Image

from core.data.augment import to_code
from core.data.pipelines import PRESETS


class ToyDataset(torch.utils.data.Dataset):
    """As torchvision's datasets do: (image, label) pairs, `transform` applied to the image."""

    def __init__(self, images, transform) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), i % 10


def pil_images(n: int = 8) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]


def tensor_images(n: int = 8) -> list[torch.Tensor]:
    return [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8) for _ in range(n)]


@pytest.mark.parametrize("pipeline", [*PRESETS.values(), "hflip|crop(padding=4)|randaugment(num_ops=2, magnitude=9)"])
@pytest.mark.parametrize("make", [pil_images, tensor_images], ids=["PIL", "uint8 tensor"])
def test_the_copied_code_runs_as_pasted(pipeline, make):
    code = to_code(pipeline)
    scope: dict = {}
    exec(code, scope)  # the code exactly as the page shows it
    loader = torch.utils.data.DataLoader(ToyDataset(make(), scope["transform"]), batch_size=4)
    images, labels = next(iter(loader))
    if "batch_transform" in scope:
        images, labels = scope["batch_transform"](images, labels)
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
