"""Experiment, not yet a preset: the scratch recipe with convnet_cifar's stem set to whiten 2x2 patches.

The stem's 24 filters become [W, -W], where W whitens the 2x2 patches of the labeled images (the
eigenvectors of their 12x12 covariance over sqrt(eigenvalue + 5e-4)), and stay frozen, as in airbench.
Measured on the validation split (core.data.validation_splits), never the test set; 2026-11-29, 2-core
bf16 host: 29.8 +- 0.2% over seeds 0-2 (29.65 / 30.1 / 29.7) against 28.2 +- 0.2% for the preset, in the
same 171-181 s per seed.

    python benchmarks/whiten_stem.py --dataset ../shared/datasets/cifar10-offline --seeds 0,1,2
"""

import argparse
import statistics
import time

import torch

from core.augment import BatchAugment
from core.data import load_splits, validation_splits
from core.device import resolve_device, use_bf16
from core.engine import predict, supervised_step, train_loop
from core.registry import preset
from core.train import seeded_model


def whitening_filters(images: torch.Tensor, eps: float = 5e-4) -> torch.Tensor:
    """12 x 3 x 2 x 2 filters that whiten the 2x2 patches of uint8 images (N x 3 x H x W)."""
    x = images.float() / 255
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    values, vectors = torch.linalg.eigh(torch.cov(patches.T))
    return (vectors.T / (values + eps).sqrt()[:, None]).reshape(12, 3, 2, 2).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    splits = validation_splits(load_splits(args.dataset))
    device = resolve_device("auto")
    bf16 = use_bf16(device, "auto")
    filters = whitening_filters(splits.labeled_x)
    accs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        cfg = preset("scratch", "recommended", seed=seed, eval_every=0)
        t = time.perf_counter()
        model = seeded_model(cfg, len(splits.classes), device)
        stem = model.backbone.stem[0]
        with torch.no_grad():
            stem.weight.copy_(torch.cat([filters, -filters]))
            stem.bias.zero_()
        stem.requires_grad_(False)
        augment = BatchAugment(cfg.augment, len(splits.classes))
        step = supervised_step(model, splits.labeled_x, splits.labeled_y, cfg, device, bf16, augment)
        params = [p for p in model.parameters() if p.requires_grad]
        train_loop(params, len(splits.labeled_y), cfg, step, device=device, set_train_mode=model.train)
        model.eval()
        logits = predict(model, splits.test_x, device, bf16)
        accs.append(float((logits.argmax(1) == splits.test_y).float().mean()))
        print(f"seed {seed}: {accs[-1]:.2%} on the validation split in {time.perf_counter() - t:.0f} s", flush=True)
    if len(accs) > 1:
        print(f"mean {statistics.mean(accs):.2%} +- {statistics.stdev(accs):.2%}")


if __name__ == "__main__":
    main()
