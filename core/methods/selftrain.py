"""Self-training on frozen features: fit the head, pseudo-label the most confident unlabeled images
class by class, refit, repeat (the practical session's semi-supervised bonus)."""

from __future__ import annotations

from core.config import ConfigError, TrainConfig
from core.method import FROZEN, OPTIMISATION, DataSizes, Method, Outcome, RunContext, Timing
from core.methods.transfer import FROZEN_128, features_seconds, head_seconds, probe_seconds
from core.pseudo import curriculum, self_train

PSEUDO = ("n_unlabeled", "rounds", "threshold", "per_class")


class FrozenSemi(Method):
    """What self-training and label spreading share: frozen features, rounds of a refitted head."""

    unit = "round"
    needs_unlabeled = True

    def check(self, cfg: TrainConfig) -> None:
        if not cfg.weights:
            raise ConfigError(f"method={cfg.method} needs pretrained weights: set weights to 'imagenet' or a .pth file")
        if cfg.finetune != "head":
            raise ConfigError(f"method={cfg.method} works on frozen features: set finetune=head")

    def total_units(self, cfg: TrainConfig) -> int:
        return cfg.rounds + 1  # round 0 is the supervised probe

    def tests_images(self, cfg: TrainConfig) -> bool:
        return False

    def estimate(self, cfg: TrainConfig, sizes: DataSizes, timing: Timing) -> float:
        pool = min(cfg.n_unlabeled or sizes.unlabeled, sizes.unlabeled)
        labeled = min(cfg.n_labeled, sizes.labeled)

        def accepted(r: int) -> int:  # round r (1, 2, ...) takes r * per_class of each class (core.pseudo)
            return min(pool, r * cfg.per_class * 10) if cfg.per_class else pool

        # round 0, the head on the labeled images alone, is the probe
        rounds = sum(head_seconds(cfg, labeled + accepted(r), timing) for r in range(1, cfg.rounds + 1))
        return probe_seconds(cfg, sizes, timing) + features_seconds(cfg, pool, "unlabeled", timing) + rounds


class SelfTrain(FrozenSemi):
    name = "selftrain"
    summary = "Self-training: the head labels the unlabeled images it is surest of, then learns from them."
    help = "Confident predictions become labels; the pool grows by a fixed number per class each round."
    fields = ("arch", *FROZEN, "augment", *OPTIMISATION, *PSEUDO)
    presets = {
        # The naive self-training loop: head, pseudo-label the 400 most confident per class, refit, 3 rounds.
        "notebook": FROZEN_128 | dict(flip_features=False, n_unlabeled=5000, rounds=3, threshold=0.0, per_class=400),
    }

    def run(self, ctx: RunContext) -> Outcome:
        return self_train(ctx, curriculum(ctx.cfg.per_class))
