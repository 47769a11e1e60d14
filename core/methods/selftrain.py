"""Self-training on frozen features: fit the head, pseudo-label the most confident unlabeled images
class by class, refit, repeat (the practical session's semi-supervised bonus)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch

from core.config import ConfigError, TrainConfig
from core.engine.predict import predict
from core.methods.base import FROZEN, OPTIMISATION, DataSizes, Method, Outcome, RunContext, Timing, finish
from core.methods.frozen import StandardizedHead, feature_cache, labeled_and_test_features, train_head
from core.methods.pseudo_labels import gallery, pseudo_accuracy, select_pseudo_labels, unlabeled_key, unlabeled_subset
from core.methods.transfer import FROZEN_128, features_seconds, head_seconds, probe_seconds

PSEUDO = ("n_unlabeled", "rounds", "threshold", "per_class")


class FrozenSemi(Method):
    """What self-training and label spreading share: frozen features, rounds of a refitted head."""

    unit = "round"
    needs_unlabeled = True
    fixed = {"finetune": "head"}

    def check(self, cfg: TrainConfig) -> None:
        if not cfg.weights:
            raise ConfigError(f"method={cfg.method} needs pretrained weights: set weights to 'imagenet' or a .pth file")
        if cfg.finetune != "head":
            raise ConfigError(f"method={cfg.method} works on frozen features: set finetune=head")

    def total_units(self, cfg: TrainConfig) -> int:
        return cfg.rounds + 1  # round 0 is the supervised probe

    def tests_images(self, cfg: TrainConfig) -> bool:
        return False

    def accepted(self, cfg: TrainConfig, r: int, pool: int, classes: int) -> int:
        """Pseudo-labels the head of round r (1, 2, ...) learns from: self-training's pool grows by per_class of
        each class a round (core.methods.pseudo_labels)."""
        return min(pool, r * cfg.per_class * classes) if cfg.per_class else pool

    def estimate(self, cfg: TrainConfig, sizes: DataSizes, timing: Timing) -> float:
        pool = min(cfg.n_unlabeled or sizes.unlabeled, sizes.unlabeled)
        labeled = min(cfg.n_labeled, sizes.labeled)
        # round 0, the head on the labeled images alone, is the probe
        rounds = sum(head_seconds(cfg, labeled + self.accepted(cfg, r, pool, sizes.classes), timing)
                     for r in range(1, cfg.rounds + 1))  # fmt: skip
        return probe_seconds(cfg, sizes, timing) + features_seconds(cfg, pool, "unlabeled", timing) + rounds


# The naive self-training loop: head, pseudo-label the 400 most confident per class, refit, 3 rounds.
NOTEBOOK = FROZEN_128 | dict(flip_features=False, n_unlabeled=5000, rounds=3, threshold=0.0, per_class=400)


class SelfTrain(FrozenSemi):
    name = "selftrain"
    summary = "Self-training: the head labels the unlabeled images it is surest of, then learns from them."
    help = "Confident predictions become labels; the pool grows by a fixed number per class each round."
    fields = ("arch", *FROZEN, "augment", *OPTIMISATION, *PSEUDO)
    presets = {
        "notebook": NOTEBOOK,
        # For a live demo, at most a minute cold on 2 cores: the features labelspread's quick preset reads (the
        # pooled stages at 112 px, no mirror images, 8,000 unlabeled), two rounds. Chosen by its time, not tuned.
        "quick": NOTEBOOK | dict(arch="mobilenet_v2_stages", resolution=112, n_unlabeled=8000, rounds=2),
    }

    def run(self, ctx: RunContext) -> Outcome:
        return self_train(ctx, curriculum(ctx.cfg.per_class))


# (round, head's probabilities on the pool, labeled features, unlabeled features) -> (probabilities, cap)
Proposer = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, int]]


def curriculum(per_class: int) -> Proposer:
    """Self-training: the head's own predictions; the pool grows by per_class per class each round."""

    def propose(r: int, probs: torch.Tensor, lab_f: torch.Tensor, unl_f: torch.Tensor) -> tuple[torch.Tensor, int]:
        return probs, per_class * (r + 1) if per_class else 0

    return propose


def self_train(ctx: RunContext, propose: Proposer) -> Outcome:
    """Round 0 fits the head on the labeled images (the supervised probe); each further round refits
    it afresh on the labeled images plus the pseudo-labels that `propose` accepted."""
    cfg, s, n = ctx.cfg, ctx.splits, ctx.n_classes
    t0 = time.perf_counter()
    subset = unlabeled_subset(s, cfg.n_unlabeled)
    features = feature_cache(cfg, s, ctx.model, ctx.device, ctx.bf16, ctx.cache_dir, ctx.progress, ctx.should_stop)
    lab_f, lab_y, test_f = labeled_and_test_features(cfg, s, features)
    unl_f = features(s.unlabeled_x[subset], "unlabeled images", *unlabeled_key(subset))
    features_s = time.perf_counter() - t0
    # Standardise with the statistics of all images the method may see (labeled and unlabeled).
    pool = torch.cat([lab_f, unl_f])
    mean, std = pool.mean(0), pool.std(0) + 1e-6
    head_init = copy.deepcopy(ctx.model.head.state_dict())
    head = StandardizedHead(ctx.model.head, mean, std).to(ctx.device)

    accepted = torch.empty(0, dtype=torch.long)
    pseudo = torch.empty(0, dtype=torch.long)
    confidence = torch.empty(0)
    rounds, history = [], []
    status, message = "finished", ""
    round_cfg = cfg.with_(eval_every=0)
    for r in range(cfg.rounds + 1):
        ctx.model.head.load_state_dict(head_init)  # each round fits the head afresh: no confirmation drift
        x = torch.cat([lab_f, unl_f[accepted]])
        y = torch.cat([lab_y, pseudo[accepted]]) if len(accepted) else lab_y
        loop = train_head(head, x, y, round_cfg, ctx.device, should_stop=ctx.should_stop)
        if loop.status != "finished":
            status, message = loop.status, f"round {r}: {loop.message}"
            break
        probs = predict(head, unl_f, ctx.device, False, uint8_images=False).softmax(1)
        test_logits = predict(head, test_f, ctx.device, False, uint8_images=False)
        test_acc = float((test_logits.argmax(1) == s.test_y).float().mean())
        rounds.append({
            "round": r,
            "accepted": len(accepted),
            "pseudo_acc": pseudo_accuracy(s, subset, accepted, pseudo),
            "per_class": torch.bincount(pseudo[accepted], minlength=n).tolist() if len(accepted) else [0] * n,
            "test_acc": test_acc,
        })  # fmt: skip
        row = loop.history[-1] | {"index": r + 1, "unit": "round", "seconds": time.perf_counter() - t0,
                                  "test_acc": test_acc, "accepted": len(accepted)}  # fmt: skip
        history.append(row)
        ctx.emit(row)
        if r == cfg.rounds:
            break
        try:
            probs, cap = propose(r, probs, lab_f[: len(s.labeled_y)], unl_f)
        except InterruptedError as err:
            status, message = "stopped", str(err)
            break
        confidence, pseudo = probs.max(1)
        accepted = select_pseudo_labels(probs, cfg.threshold, cap)
    timings = {"train_s": time.perf_counter() - t0, "features_s": features_s}
    last = rounds[-1] if rounds else {}
    diagnostics = {
        "algorithm": cfg.method,
        "rounds": rounds,
        "final_count": last.get("accepted", 0),
        "final_acc": last.get("pseudo_acc"),
        "supervised_test_acc": rounds[0]["test_acc"] if rounds else None,
        "gallery": gallery(subset[accepted], pseudo[accepted], confidence[accepted], n) if len(accepted) else None,
    }
    return finish(ctx, status, message, history, head, test_inputs=test_f, train_inputs=lab_f[: len(s.labeled_y)],
                  images=False, timings=timings, diagnostics=diagnostics)  # fmt: skip
