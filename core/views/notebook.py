"""The practical session "Small data and deep learning", replayed: its questions in order, the
experiment each one asks for, and its results table with our numbers (over seeds) beside its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from core.config import TrainConfig
from core.methods.registry import preset
from core.runs.record import RunRecord
from core.views.tables import mean_std_percent

SEEDS = (0, 1, 2)
FLIP_CROP = "hflip|crop(padding=4)"


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    text: str
    model: str = ""  # the "Model" column of the notebook's table; "" for a step without an experiment
    reported: float | None = None  # the notebook's test accuracy (100 epochs, original CIFAR-10)


STEPS = (
    Step(
        "split",
        "1. The split",
        "Only the first 100 images of CIFAR-10's training set keep their labels; the other "
        "49,900 are unlabeled, and the 10,000 test images measure the result. About 10 images per class: the "
        "Data page shows them.",
    ),
    Step(
        "evaluation",
        "2. Why evaluation is hard",
        "With 100 labels there is no room for a validation set, and "
        "a test accuracy moves by 1-3 points from one seed to the next. So every experiment below runs with 3 "
        "seeds, and the table shows mean ± standard deviation, never one number.",
    ),
    Step(
        "scratch",
        "3. Training from scratch",
        "A ResNet-18 for 32x32 images, the notebook's recipe: Adam, lr "
        "0.1, 100 epochs. It memorises the 100 images (train accuracy near 100%) and generalises poorly.",
        "ResNet-18 from scratch",
        0.1940,
    ),
    Step(
        "transfer",
        "4. Transfer from ImageNet",
        "The same images through a network pretrained on ImageNet's 1.2 "
        "million photos, fine-tuned at 32x32 as in the notebook. Its features already separate shapes and "
        "textures; the Why it works page draws them.",
        "ImageNet-pretrained, fine-tuned at 32x32",
        0.2982,
    ),
    Step(
        "augment",
        "5. Priors and augmentation",
        "Flips and crops tell the network that a mirrored or shifted "
        "cat is still a cat: a prior, added without a single new label.",
        "from scratch, flip and crop",
        0.1984,
    ),
    Step(
        "conclusions",
        "6. Conclusions",
        "Compare the table with the notebook's: prior knowledge (pretrained "
        "features) buys much more than augmentation with 100 labels, and a better recipe (the Train page's "
        "recommended presets) more still.",
    ),
    Step(
        "semi",
        "7. Bonus: the unlabeled images",
        f"Label spreading: the 100 labels flow to {preset('labelspread', 'recommended').n_unlabeled:,} of the "
        "unlabeled images along a graph of ImageNet features, and a head learns from the most confident of them.",
        "label spreading (semi-supervised)",
        None,
    ),
)


def experiments(arch: str, weights: str, n_labeled: int = 100) -> dict[str, TrainConfig]:
    """The configs the notebook's questions ask for. arch/weights: the pretrained network used for
    transfer and for the bonus (ResNet-18 with torchvision's weights, as the notebook, or a local file).
    n_labeled: 100, or fewer where the dataset has fewer labeled images."""
    return {
        "scratch": preset("scratch", "notebook", n_labeled=n_labeled),
        "transfer": preset("transfer", "notebook", arch=arch, weights=weights, resolution=32, n_labeled=n_labeled),
        "augment": preset("scratch", "notebook", augment=FLIP_CROP, n_labeled=n_labeled),
        "semi": preset("labelspread", "recommended", arch=arch, weights=weights, n_labeled=n_labeled),
    }


def same_experiment(a: TrainConfig, b: TrainConfig) -> bool:
    """Equal but for the seed (and the label and storage option, which config_hash leaves out)."""
    return a.with_(seed=0).config_hash() == b.with_(seed=0).config_hash()


def runs_of(cfg: TrainConfig, runs: list[RunRecord]) -> list[RunRecord]:
    done = [r for r in runs if r.status == "finished" and r.metrics.test_acc is not None]
    return [r for r in done if same_experiment(r.config, cfg)]


def missing_seeds(cfg: TrainConfig, runs: list[RunRecord], queued: list[TrainConfig]) -> list[int]:
    """The seeds of SEEDS that no finished run and no queued job of this experiment has yet."""
    have = {r.config.seed for r in runs_of(cfg, runs)} | {c.seed for c in queued if same_experiment(c, cfg)}
    return [s for s in SEEDS if s not in have]


def results(configs: dict[str, TrainConfig], runs: list[RunRecord]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table, per-seed frame). The table is in the notebook's format: Model, Number of epochs, Train
    accuracy, Test accuracy (ours: mean ± std over seeds), and the notebook's reported test accuracy."""
    rows, seeds = [], []
    for step in STEPS:
        if step.key not in configs:
            continue
        cfg = configs[step.key]
        mine = runs_of(cfg, runs)
        test = pd.Series([r.metrics.test_acc for r in mine], dtype=float)
        train = pd.Series([r.metrics.train_acc for r in mine], dtype=float)
        rows.append({
            "Model": step.model,
            "Number of epochs": cfg.epochs,
            "Train accuracy": f"{train.mean():.1%}" if len(mine) else "",
            "Test accuracy": mean_std_percent(test, one=" (1 seed)"),
            "Seeds": len(mine),
            "Notebook (test)": f"{step.reported:.2%}" if step.reported is not None else "",
        })  # fmt: skip
        seeds += [{"experiment": step.model, "seed": r.config.seed, "test_acc": r.metrics.test_acc,
                   "reported": step.reported} for r in mine]  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(seeds, columns=["experiment", "seed", "test_acc", "reported"])
