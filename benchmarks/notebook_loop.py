"""The practical session's training loop, written the way the notebook writes it: the baseline the
benchmark measures our engine against (same recipe, same device, same process).

Per-image PIL transforms through a DataLoader, batch 10, Adam, `loss.item()` and accuracy summed
on every step, MultiStepLR x0.1 every 30 epochs, evaluation at batch 10. Our own code, not a copy.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python benchmarks/...` from the root imports this checkout's core

from core.data.splits import Splits  # noqa: E402
from core.models import create_model  # noqa: E402


class PilImages(Dataset):
    """Tensors back to PIL images, as torchvision's CIFAR10 dataset hands them to its transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def run_notebook_loop(
    splits: Splits,
    *,
    epochs: int = 100,
    lr: float = 0.1,
    seed: int = 0,
    device: str = "cpu",
    test_limit: int | None = None,
) -> dict[str, Any]:
    """Scratch ResNet-18, ToTensor only, Adam(lr), batch 10; returns accuracies and wall times."""
    torch.manual_seed(seed)
    dev = torch.device(device)
    model = create_model("resnet18_cifar", len(splits.classes)).to(dev)
    train_set = PilImages(splits.labeled_x, splits.labeled_y, transforms.ToTensor())
    n_test = test_limit or len(splits.test_y)
    test_set = PilImages(splits.test_x[:n_test], splits.test_y[:n_test], transforms.ToTensor())
    train_loader = DataLoader(train_set, batch_size=10, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=10, shuffle=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[30, 60, 90], gamma=0.1)

    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        running_loss, correct, total = 0.0, 0, 0
        for inputs, labels in train_loader:
            inputs, labels = inputs.to(dev), labels.to(dev)
            optimizer.zero_grad()
            outputs = model(inputs)
            loss = F.cross_entropy(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            correct += (outputs.argmax(1) == labels).sum().item()
            total += labels.size(0)
        scheduler.step()
    train_s = time.perf_counter() - t0
    train_acc = correct / max(1, total)

    t1 = time.perf_counter()
    model.eval()
    right = 0
    with torch.no_grad():
        for inputs, labels in test_loader:
            outputs = model(inputs.to(dev))
            right += (outputs.argmax(1).cpu() == labels).sum().item()
    test_s = time.perf_counter() - t1
    return {"train_acc": train_acc, "test_acc": right / n_test, "train_s": train_s, "test_s": test_s, "n_test": n_test}
