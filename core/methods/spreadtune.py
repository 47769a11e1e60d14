"""Label spreading, then the whole network learns from it: the most confident spread labels teach a
fine-tuned network that sees them under strong augmentation (flip, crop, cutout), while the 100 true
labels keep it anchored. The spreading works on frozen features, which know nothing of CIFAR; the
fine-tuned network adapts them, and the augmentation makes it agree with itself across views of an
image rather than copy the teacher's mistakes one by one (Noisy Student's recipe, with label
spreading as the teacher). Meant for a GPU: on 2 CPU cores one epoch of its preset takes over an hour."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.config import ConfigError, TrainConfig
from core.data.augment import BatchAugment
from core.engine.device import autocast
from core.engine.loop import LoopResult, train_loop
from core.engine.optim import weight_average
from core.methods.base import (
    OPTIMISATION,
    PRETRAINED,
    DataSizes,
    Method,
    Outcome,
    RunContext,
    Timing,
    evaluation_seconds,
    finish,
    subset_check,
)
from core.methods.fixmatch import WEAK  # the labeled images' augmentation
from core.methods.frozen import StandardizedHead, extract, feature_cache, labeled_key, train_head
from core.methods.labelspread import LabelSpread, spread
from core.methods.pseudo_labels import gallery, pseudo_accuracy, select_pseudo_labels, unlabeled_key, unlabeled_subset
from core.methods.transfer import features_seconds
from core.models import feature_dim

# The pseudo-labeled images. All three steps run batched on the device; RandAugment, per image, would
# cost as much as the network's own step on a GPU.
STRONG = "hflip|crop(padding=4)|erasing(p=1.0, max_area=0.25)"


def teacher_config(cfg: TrainConfig) -> TrainConfig:
    """The frozen features the labels spread over: labelspread's (flip-averaged, no augmented views),
    so that both methods share one feature cache."""
    return cfg.with_(finetune="head", flip_features=True, augment="none")


@dataclass
class Teacher:
    subset: torch.Tensor  # the unlabeled images used (indices)
    probs: torch.Tensor  # their spread class probabilities
    labeled_features: torch.Tensor  # frozen features of the labeled images
    unlabeled_features: torch.Tensor  # ... and of the unlabeled images used


def spread_teacher(ctx: RunContext) -> Teacher:
    """Labels spread over the pretrained network's frozen features, before any of its weights move."""
    cfg, s = teacher_config(ctx.cfg), ctx.splits
    features = feature_cache(cfg, s, ctx.model, ctx.device, ctx.bf16, ctx.cache_dir, ctx.progress, ctx.should_stop)
    lab_f = features(s.labeled_x, "labeled images", *labeled_key(cfg, len(s.labeled_y)))
    subset = unlabeled_subset(s, cfg.n_unlabeled)
    unl_f = features(s.unlabeled_x[subset], "unlabeled images", *unlabeled_key(subset))
    return Teacher(subset, spread(ctx, lab_f, unl_f), lab_f, unl_f)


# labelspread's head, as its recommended preset trains it (AdamW on standardised features, 20 epochs).
HEAD = {k: LabelSpread.presets["recommended"][k] for k in ("epochs", "batch_size", "optimizer", "lr", "weight_decay",
        "schedule")} | dict(warmup_epochs=0, label_smoothing=0.0, eval_every=0)  # fmt: skip
HEAD_STEPS = 1000  # at least (the preset's pool: 20 epochs of 201 steps)


def head_schedule(n_items: int) -> tuple[int, int]:
    """(epochs, steps per epoch) of the head fitted first on n_items features: a small pool gets more epochs,
    so that the head always takes about HEAD_STEPS steps."""
    steps_per_epoch = -(-n_items // HEAD["batch_size"])
    return max(HEAD["epochs"], -(-HEAD_STEPS // steps_per_epoch)), steps_per_epoch


def fit_head_first(ctx: RunContext, features: torch.Tensor, labels: torch.Tensor) -> LoopResult:
    """Sets the network's head to a linear probe of the frozen features on these labels: labelspread's
    own result. Fine-tuning then starts from a network that is already right two times in three; from
    a random head, the first steps' large gradients would scramble the pretrained features (Kumar et
    al., 2022, "Fine-tuning can distort pretrained features": probe first, then fine-tune)."""
    # A floor under each feature's spread: a channel that barely moves on the frozen network (a ReLU that
    # is almost never on) would otherwise get a weight that blows up once fine-tuning wakes it.
    std = features.std(0)
    head = StandardizedHead(ctx.model.head, features.mean(0), std.clamp(min=float(std.mean())))
    epochs, _ = head_schedule(len(labels))
    head_cfg = ctx.cfg.with_(**HEAD | {"epochs": epochs})
    loop = train_head(head, features, labels, head_cfg, ctx.device, should_stop=ctx.should_stop)
    with torch.no_grad():  # fold the standardisation into the Linear layer: W x' + b, x' = (x - m) / s
        linear = ctx.model.head
        linear.weight.div_(head.std.to(linear.weight.device))
        linear.bias.sub_(linear.weight @ head.mean.to(linear.weight.device))
    return loop


def train_keeping_statistics(model: nn.Module) -> None:
    """Training mode, except that BatchNorm layers normalise with their pretrained statistics (their scale
    and shift still learn). In training mode they would normalise with each batch's own statistics, and
    the features that the head was fitted on would change at the first step: on MobileNetV2 at 160 px,
    with 128 CIFAR images, by as much as their own length (cosine similarity 0.45)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def labeled_batch(cfg: TrainConfig) -> int:
    """Labeled images per step, beside batch_size pseudo-labeled ones (FixMatch's ratio mu, inverted)."""
    return max(2, cfg.batch_size // cfg.mu)


def student_teacher(ctx: RunContext, student: nn.Module, subset: torch.Tensor) -> torch.Tensor:
    """The next round's teacher: the labels spread again, now over the fine-tuned student's own features,
    which have learned CIFAR's classes (the frozen ImageNet features had not)."""
    s, cfg = ctx.splits, ctx.cfg

    def features(images: torch.Tensor, what: str) -> torch.Tensor:
        return extract(student, images, device=ctx.device, bf16=ctx.bf16, progress=ctx.progress, what=what,
                       flip=cfg.flip_features, should_stop=ctx.should_stop)  # fmt: skip

    return spread(ctx, features(s.labeled_x, "labeled images"), features(s.unlabeled_x[subset], "unlabeled images"))


def in_round(row: dict, number: int, epochs_before: int, seconds_before: float) -> dict:
    """An epoch's row as part of the whole run: epochs and seconds count on across rounds, so that the
    learning curve reads as one run and the ETA (core.jobs.progress) counts the rounds before."""
    return row | {"index": row["index"] + epochs_before, "seconds": row["seconds"] + seconds_before, "round": number}


def rows_in_round(on_row: Callable[[dict], None], *where: object) -> Callable[[dict], None]:
    return lambda row: on_row(in_round(row, *where))


def spread_tune(ctx: RunContext) -> Outcome:
    cfg, s, model, device = ctx.cfg, ctx.splits, ctx.model, ctx.device
    t0 = time.perf_counter()
    try:
        teacher = spread_teacher(ctx)
    except InterruptedError as err:
        return finish(ctx, "stopped", str(err), [], model, timings={"train_s": time.perf_counter() - t0})
    subset, probs = teacher.subset, teacher.probs
    confidence, spread_labels = probs.max(1)
    accepted = select_pseudo_labels(probs, cfg.threshold, cfg.per_class)
    probe = fit_head_first(
        ctx, torch.cat([teacher.labeled_features, teacher.unlabeled_features[accepted]]),
        torch.cat([s.labeled_y, spread_labels[accepted]]),
    )  # fmt: skip
    if probe.status != "finished":
        return finish(ctx, probe.status, f"fitting the head: {probe.message}", [], model,
                      timings={"train_s": time.perf_counter() - t0})  # fmt: skip
    teacher_s = time.perf_counter() - t0
    lab_x, lab_y = s.labeled_x.to(device), s.labeled_y.to(device)
    weak, strong = BatchAugment(WEAK, ctx.n_classes), BatchAugment(cfg.augment, ctx.n_classes)
    ema, update_ema = weight_average(model, cfg.ema)
    gen = torch.Generator().manual_seed(cfg.seed)
    n_lab = labeled_batch(cfg)
    check = subset_check(ctx, ema)
    start_acc = check() if cfg.eval_every else None  # where fine-tuning starts: labelspread's own result
    t = time.perf_counter()
    history, rounds = [], []
    status, message = "finished", ""
    for r in range(cfg.spread_rounds):
        if r:
            try:
                probs = student_teacher(ctx, ema, subset)
            except InterruptedError as err:
                status, message = "stopped", str(err)
                break
            confidence, spread_labels = probs.max(1)
            accepted = select_pseudo_labels(probs, cfg.threshold, cfg.per_class)
            model.load_state_dict(ema.state_dict())  # the next student starts from the averaged one
        pool_x, pool_y = s.unlabeled_x[subset[accepted]].to(device), spread_labels[accepted].to(device)

        def step_loss(idx: torch.Tensor, pool_x=pool_x, pool_y=pool_y) -> tuple[torch.Tensor, torch.Tensor]:
            li = torch.randint(0, len(lab_y), (n_lab,), generator=gen).to(device)
            xl, yl = weak(lab_x[li], lab_y[li])
            xu, yu = strong(pool_x[idx], pool_y[idx])
            with autocast(device, ctx.bf16):
                logits = model(torch.cat([xl, xu])).float()
            ll, lu = logits.split([len(xl), len(xu)])
            smooth = cfg.label_smoothing
            loss = F.cross_entropy(ll, yl, label_smoothing=smooth) + F.cross_entropy(lu, yu, label_smoothing=smooth)
            return loss, (lu.argmax(1) == yu).sum()  # train accuracy: agreement with the spread labels

        where = (r + 1, len(history), time.perf_counter() - t)
        params = [p for p in model.parameters() if p.requires_grad]
        loop = train_loop(
            params, len(accepted), cfg, step_loss, device=device, check=check,
            on_row=ctx.on_row and rows_in_round(ctx.on_row, *where), should_stop=ctx.should_stop,
            after_step=update_ema, set_train_mode=lambda: train_keeping_statistics(model),
        )  # fmt: skip
        history += [in_round(row, *where) for row in loop.history]
        checks = [row["test_acc"] for row in loop.history if row.get("test_acc") is not None]
        pseudo_acc = pseudo_accuracy(s, subset, accepted, spread_labels)
        rounds.append({"round": r + 1, "accepted": len(accepted), "pseudo_acc": pseudo_acc,
                       "test_acc": checks[-1] if checks else None})  # fmt: skip
        status, message = loop.status, loop.message
        if status != "finished":
            break
    last = rounds[-1] if rounds else {}
    diagnostics = {
        "algorithm": "spreadtune",
        "rounds": rounds,
        "final_count": last.get("accepted"),
        "final_acc": last.get("pseudo_acc"),
        "start_test_acc": start_acc,
        "gallery": gallery(subset[accepted], spread_labels[accepted], confidence[accepted], ctx.n_classes),
    }  # fmt: skip
    timings = {"train_s": time.perf_counter() - t0, "teacher_s": teacher_s, "student_s": time.perf_counter() - t}
    return finish(ctx, status, message, history, ema, timings=timings, diagnostics=diagnostics)


class SpreadTune(Method):
    name = "spreadtune"
    summary = "Label spreading's surest labels teach the whole network, under strong augmentation (GPU-sized)."
    help = (
        "A teacher and a student: labels spread over frozen features, then the network itself learns them from "
        "heavily augmented images, and adapts its features to CIFAR."
    )
    fields = ("arch", *PRETRAINED, "augment", *OPTIMISATION, "n_unlabeled", "threshold", "per_class", "knn",
              "spread_rounds", "mu", "ema", "flip_test", "eval_every", "keep_weights")  # fmt: skip
    presets = {
        # The teacher is labelspread's recommended recipe as it was when this preset was measured (one spread
        # over 40,000 unlabeled images, 20 neighbours, the 2,000 surest labels of each class; 75% of those are
        # right), without labelspread's later re-spread (spreadtune's own second round, spread_rounds=2, spreads
        # over the student's features). The student is the same MobileNetV2, every layer fine-tuned at 160 px
        # with AdamW, its weights averaged (EMA) and tested with mirroring.
        # On the validation split: SGD at lr 0.02 diverged in 9 steps (0.005 and 0.002 blew the loss up too),
        # AdamW at 1e-4 did not; one epoch on the CPU took 62.0% (labelspread) to 65.5%. On an H200
        # (benchmarks/gpu.py, docs/bench/gpu): validation 67.5% (seed 0); test 67.5 +- 0.06%, 103 s cold.
        "gpu": dict(
            arch="mobilenet_v2_stages",
            weights="imagenet",
            resolution=160,
            normalize=True,
            finetune="all",
            n_unlabeled=40000,
            threshold=0.0,
            per_class=2000,
            knn=20,
            augment=STRONG,
            epochs=20,
            batch_size=256,
            mu=7,
            optimizer="adamw",
            lr=1e-4,
            weight_decay=0.05,
            schedule="cosine",
            warmup_epochs=1,
            label_smoothing=0.1,
            ema=0.999,
            flip_test=True,
            eval_every=5,
        ),  # fmt: skip
    }
    # For a live demo, at most a minute cold on 2 cores: a teacher over 3,000 unlabeled images at 96 px, its 150
    # surest labels per class, two short epochs of fine-tuning, one plain test pass. The EMA is off: over ~50
    # steps a 0.999 average would stay at the teacher's probe. Chosen by its time, not tuned.
    presets["quick"] = presets["gpu"] | dict(resolution=96, n_unlabeled=3000, per_class=150, epochs=2, batch_size=64,
                                             warmup_epochs=0, ema=0.0, flip_test=False, eval_every=0)  # fmt: skip
    needs_unlabeled = True

    def check(self, cfg: TrainConfig) -> None:
        if not cfg.weights:
            raise ConfigError("method=spreadtune spreads labels over pretrained features: set weights to "
                              "'imagenet' or a .pth file")  # fmt: skip
        if cfg.finetune == "head":
            raise ConfigError("method=spreadtune fine-tunes the network: set finetune=all (or last)")

    def estimate(self, cfg: TrainConfig, sizes: DataSizes, timing: Timing) -> float:
        teacher = teacher_config(cfg)
        pool = min(cfg.n_unlabeled or sizes.unlabeled, sizes.unlabeled)
        labeled = min(cfg.n_labeled, sizes.labeled)
        accepted = min(pool, cfg.per_class * sizes.classes) if cfg.per_class else pool
        spreading = (
            features_seconds(teacher, labeled, "labeled", timing)
            + features_seconds(teacher, pool, "unlabeled", timing)
            + timing.graph(pool + labeled, feature_dim(cfg.arch), cfg.knn)
        )
        head_epochs, head_steps = head_schedule(labeled + accepted)
        head = head_epochs * head_steps * timing.head_step(feature_dim(cfg.arch))
        steps = cfg.epochs * -(-accepted // cfg.batch_size)
        step = timing.train_step(cfg.arch, cfg.resolution, cfg.batch_size + labeled_batch(cfg))
        # A later round extracts the student's features (never cached: they change), spreads, trains again.
        views = 2 if cfg.flip_features else 1
        respread = (
            (labeled + pool) * views * timing.per_image(cfg.arch, cfg.resolution)
            + 2 * timing.fold(cfg.arch)  # two extractions: the labeled images, the pool
            + timing.graph(pool + labeled, feature_dim(cfg.arch), cfg.knn)
        )
        later = (cfg.spread_rounds - 1) * (respread + steps * step)
        return spreading + head + steps * step + later + evaluation_seconds(cfg, sizes, timing)

    def total_units(self, cfg: TrainConfig) -> int:
        return cfg.epochs * cfg.spread_rounds

    def run(self, ctx: RunContext) -> Outcome:
        return spread_tune(ctx)
