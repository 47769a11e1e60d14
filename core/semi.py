"""Semi-supervised learning with the unlabeled images: self-training on frozen features, and FixMatch.

Self-training (CPU-friendly): features of the labeled and unlabeled images are computed once by a
pretrained backbone (cached on disk); then each round fits the linear head on the labeled images plus
the pseudo-labels accepted so far, predicts the unlabeled pool, and accepts the most confident
predictions, class-balanced. FixMatch (end to end, meant for a GPU): a weak view of each unlabeled
image gives a pseudo-label when confident; the model must predict it on a strong view.

The hidden labels of the unlabeled images are read only to report pseudo-label accuracy, after the
pseudo-labels are chosen: scrambling them changes no number that training produces.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from core import features as feat
from core.augment import BatchAugment
from core.config import TrainConfig
from core.data import Splits
from core.train import (
    Diverged,
    _result,
    _Standardized,
    feature_cache,
    labeled_and_test_features,
    lr_factor,
    make_optimizer,
    metrics,
    predict,
    train_loop,
)

WEAK = "hflip|crop(padding=4)"
STRONG = "hflip|crop(padding=4)|randaugment(num_ops=2, magnitude=10)|erasing(p=1.0, max_area=0.25)"


def unlabeled_subset(splits: Splits, n: int) -> torch.Tensor:
    """Indices of the unlabeled images used: all, or a fixed random subset of n (the same for every run)."""
    total = len(splits.unlabeled_x)
    if n <= 0 or n >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(0))[:n].sort().values


def select_pseudo_labels(probs: torch.Tensor, threshold: float, per_class: int) -> torch.Tensor:
    """Indices of accepted unlabeled images: confidence >= threshold and, per predicted class, the
    `per_class` most confident (0: no cap). Pure, so it is easy to test."""
    confidence, label = probs.max(1)
    keep = []
    for c in range(probs.shape[1]):
        idx = ((label == c) & (confidence >= threshold)).nonzero().flatten()
        if per_class:
            idx = idx[confidence[idx].argsort(descending=True)[:per_class]]
        keep.append(idx)
    return torch.cat(keep).sort().values


def knn_graph(feats: torch.Tensor, k: int, dims: int = 256, chunk: int = 4096) -> torch.Tensor:
    """Symmetric, normalised k-nearest-neighbour graph D^-1/2 W D^-1/2 (sparse N x N) of features,
    by cosine similarity after PCA to `dims` dimensions (50,000 images: about 15 s on 2 cores)."""
    centred = feats - feats.mean(0)
    _, _, basis = torch.pca_lowrank(centred, q=min(dims, *feats.shape), center=False, niter=3)
    z = F.normalize(centred @ basis, dim=1)
    n = len(z)
    sims, cols = [], []
    for start in range(0, n, chunk):
        v, i = (z[start : start + chunk] @ z.T).topk(min(k + 1, n), dim=1)
        sims.append(v[:, 1:])  # the first neighbour is the image itself
        cols.append(i[:, 1:])
    weight = torch.cat(sims).clamp(min=0) ** 3  # sharpen: near neighbours count much more
    rows = torch.arange(n).repeat_interleave(weight.shape[1])
    w = torch.sparse_coo_tensor(
        torch.stack([rows, torch.cat(cols).flatten()]), weight.flatten(), (n, n), check_invariants=False
    )
    w = (w + w.t()).coalesce()
    d = torch.sparse.sum(w, 1).to_dense().clamp(min=1e-8).rsqrt()
    idx = w.indices()
    return torch.sparse_coo_tensor(idx, w.values() * d[idx[0]] * d[idx[1]], (n, n)).coalesce()


def label_spread(graph: torch.Tensor, labels: torch.Tensor, n_classes: int, alpha: float = 0.99, iters: int = 20):
    """Zhou et al.'s label spreading: the first len(labels) nodes are labeled. Returns class
    probabilities of the other nodes, balanced so that every class gets the same total mass (the
    labeled set is unbalanced; without this, frequent classes swallow the pool)."""
    seeds = torch.zeros(graph.shape[0], n_classes)
    seeds[torch.arange(len(labels)), labels] = 1
    scores = seeds.clone()
    for _ in range(iters):
        scores = alpha * torch.sparse.mm(graph, scores) + (1 - alpha) * seeds
    scores = scores[len(labels) :].clamp(min=0) + 1e-12
    scores = scores / scores.sum(0, keepdim=True)
    return scores / scores.sum(1, keepdim=True)


def fit_semi(cfg, splits, model, device, bf16, on_epoch, should_stop, cache_dir, progress) -> dict[str, Any]:
    """The semi-supervised part of core.train.fit: its run result (status, history, metrics, diagnostics)."""
    if len(splits.unlabeled_x) == 0:
        raise ValueError("semi-supervised learning needs unlabeled images, and this dataset has none")
    if cfg.semi in ("selftrain", "labelspread"):
        return _self_train(cfg, splits, model, device, bf16, on_epoch, should_stop, cache_dir, progress)
    return _fixmatch(cfg, splits, model, device, bf16, on_epoch, should_stop)


def _pseudo_accuracy(
    splits: Splits, subset: torch.Tensor, accepted: torch.Tensor, labels: torch.Tensor
) -> float | None:
    """Diagnostics only: how many accepted pseudo-labels match the hidden ground truth."""
    if splits.unlabeled_hidden_y is None or len(accepted) == 0:
        return None
    truth = splits.unlabeled_hidden_y[subset[accepted]]
    return float((truth == labels[accepted]).float().mean())


def _self_train(cfg, splits, model, device, bf16, on_epoch, should_stop, cache_dir, progress) -> dict[str, Any]:
    n = len(splits.classes)
    t0 = time.perf_counter()
    subset = unlabeled_subset(splits, cfg.n_unlabeled)
    features = feature_cache(cfg, splits, model, device, bf16, cache_dir, progress)
    lab_f, lab_y, test_f = labeled_and_test_features(cfg, splits, features)
    unl_f = features(splits.unlabeled_x[subset], "unlabeled images", "unlabeled", len(subset), int(subset.sum()))
    features_s = time.perf_counter() - t0
    # Standardise with the statistics of all images the method may see (labeled and unlabeled).
    pool = torch.cat([lab_f, unl_f])
    mean, std = pool.mean(0), pool.std(0) + 1e-6
    head_init = copy.deepcopy(model.head.state_dict())

    accepted = torch.empty(0, dtype=torch.long)
    pseudo = torch.empty(0, dtype=torch.long)
    rounds, history = [], []
    status, message = "finished", ""
    for r in range(cfg.rounds + 1):  # round 0: labeled images alone, the supervised probe
        model.head.load_state_dict(head_init)  # each round fits the head afresh: no confirmation drift
        head = _Standardized(model.head, mean, std).to(device)
        x = torch.cat([lab_f, unl_f[accepted]])
        y = torch.cat([lab_y, pseudo[accepted]]) if len(accepted) else lab_y
        round_cfg = cfg.with_(eval_every=0)
        try:
            status, rows, message = train_loop(
                head, x, y, round_cfg, device=device, bf16=False, augment=lambda a, b: (a.float(), b),
                check=None, on_epoch=None, should_stop=should_stop, set_train_mode=head.train,
            )  # fmt: skip
        except Diverged as err:
            status, message = "diverged", f"the head's loss became NaN in round {r}: lower the learning rate"
            rows = err.args[1]
        if status != "finished":
            break
        probs = predict(head, unl_f, device, False, uint8_images=False).softmax(1)
        test_logits = predict(head, test_f, device, False, uint8_images=False)
        test_acc = float((test_logits.argmax(1) == splits.test_y).float().mean())
        info = {
            "round": r,
            "accepted": len(accepted),
            "pseudo_acc": _pseudo_accuracy(splits, subset, accepted, pseudo) if len(accepted) else None,
            "per_class": torch.bincount(pseudo[accepted], minlength=n).tolist() if len(accepted) else [0] * n,
            "test_acc": test_acc,
        }
        rounds.append(info)
        row = rows[-1] | {"epoch": r + 1, "seconds": time.perf_counter() - t0, "test_acc": test_acc,
                          "progress": (r + 1) / (cfg.rounds + 1), "accepted": len(accepted)}  # fmt: skip
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if r == cfg.rounds:
            break
        if r == 0 and cfg.semi == "labelspread":
            # Spread the labels over a kNN graph of labeled + unlabeled features, then accept the
            # per_class most confident of each class at once.
            if progress:
                progress(0.0, "Building the kNN graph and spreading labels")
            graph = knn_graph(torch.cat([lab_f[: len(splits.labeled_y)], unl_f]), cfg.knn)
            probs, cap = label_spread(graph, splits.labeled_y, n), cfg.per_class
        else:
            # Self-training: the pool grows by per_class per class each round (a curriculum).
            cap = cfg.per_class * (r + 1) if cfg.per_class else 0
        pseudo = probs.argmax(1)
        accepted = select_pseudo_labels(probs, cfg.threshold, cap)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    head = _Standardized(model.head, mean, std).to(device)
    test = metrics(predict(head, test_f, device, False, uint8_images=False), splits.test_y, n)
    eval_s = time.perf_counter() - t1
    train = metrics(
        predict(head, lab_f[: len(splits.labeled_y)], device, False, uint8_images=False), splits.labeled_y, n
    )
    result = _result(status, message, history, train, test, train_s, eval_s)
    result["timings"]["features_s"] = features_s
    last = rounds[-1] if rounds else {}
    result["semi"] = {
        "algorithm": cfg.semi,
        "rounds": rounds,
        "final_count": last.get("accepted", 0),
        "final_acc": last.get("pseudo_acc"),
        "supervised_test_acc": rounds[0]["test_acc"] if rounds else None,
    }
    return result


def _fixmatch(cfg: TrainConfig, splits: Splits, model, device, bf16, on_epoch, should_stop) -> dict[str, Any]:
    n = len(splits.classes)
    model.set_trainable(cfg.finetune)
    ema = copy.deepcopy(model).eval() if cfg.ema > 0 else model
    for p in ema.parameters():
        p.requires_grad_(False)
    weak, strong = BatchAugment(WEAK, n), BatchAugment(STRONG, n)
    lab_x, lab_y = splits.labeled_x.to(device), splits.labeled_y.to(device)
    subset = unlabeled_subset(splits, cfg.n_unlabeled)
    unl_x = splits.unlabeled_x[subset].to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(cfg, params)
    steps_per_epoch = max(1, math.ceil(len(lab_y) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, steps_per_epoch))
    gen = torch.Generator().manual_seed(cfg.seed)
    eval_idx = torch.randperm(len(splits.test_y), generator=torch.Generator().manual_seed(0))[: cfg.eval_subset]
    history, rounds = [], []
    status, message = "finished", ""
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        sums = {"loss": 0.0, "correct": 0, "seen": 0, "masked": 0, "pseudo_right": 0, "unl": 0}
        for _ in range(steps_per_epoch):
            if should_stop and should_stop():
                status, message = "stopped", f"stopped by request during epoch {epoch}"
                break
            li = torch.randint(0, len(lab_y), (cfg.batch_size,), generator=gen).to(device)
            ui = torch.randint(0, len(unl_x), (cfg.batch_size * cfg.mu,), generator=gen)
            xl, yl = weak(lab_x[li], lab_y[li])
            no_labels = torch.zeros(len(ui), dtype=torch.long, device=device)
            xw, _ = weak(unl_x[ui.to(device)], no_labels)
            xs, _ = strong(unl_x[ui.to(device)], no_labels)
            with feat.autocast(device, bf16):
                logits = model(torch.cat([xl, xw, xs])).float()
            ll, lw, ls = logits.split([len(xl), len(xw), len(xs)])
            probs = lw.detach().softmax(1)
            conf, guess = probs.max(1)
            mask = (conf >= cfg.threshold).float()
            loss = F.cross_entropy(ll, yl, label_smoothing=cfg.label_smoothing)
            loss = loss + cfg.lambda_u * (F.cross_entropy(ls, guess, reduction="none") * mask).mean()
            if not torch.isfinite(loss):
                status, message = (
                    "diverged",
                    f"the loss became NaN or infinite in epoch {epoch}: lower the learning rate",
                )
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not model:
                with torch.no_grad():
                    for pe, pm in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
                        if pe.dtype.is_floating_point:
                            pe.lerp_(pm, 1 - cfg.ema)
                        else:
                            pe.copy_(pm)
            sums["loss"] += float(loss.detach()) * len(li)
            sums["correct"] += int((ll.argmax(1) == yl).sum())
            sums["seen"] += len(li)
            sums["masked"] += int(mask.sum())
            sums["unl"] += len(ui)
            if splits.unlabeled_hidden_y is not None:  # diagnostics only, after the pseudo-labels are fixed
                truth = splits.unlabeled_hidden_y[subset[ui]].to(device)
                sums["pseudo_right"] += int(((guess == truth).float() * mask).sum())
        if status != "finished":
            break
        test_acc = None
        if cfg.eval_every and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            logits = predict(ema, splits.test_x[eval_idx], device, bf16)
            test_acc = float((logits.argmax(1) == splits.test_y[eval_idx]).float().mean())
        pseudo_acc = (
            sums["pseudo_right"] / sums["masked"] if sums["masked"] and splits.unlabeled_hidden_y is not None else None
        )
        row = {
            "epoch": epoch, "train_loss": sums["loss"] / max(1, sums["seen"]),
            "train_acc": sums["correct"] / max(1, sums["seen"]), "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0, "test_acc": test_acc,
            "mask_rate": sums["masked"] / max(1, sums["unl"]), "pseudo_acc": pseudo_acc,
        }  # fmt: skip
        history.append(row)
        rounds.append({"round": epoch, "accepted": sums["masked"], "pseudo_acc": pseudo_acc, "test_acc": test_acc})
        if on_epoch:
            on_epoch(row)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    test = metrics(predict(ema, splits.test_x, device, bf16), splits.test_y, n)
    eval_s = time.perf_counter() - t1
    train = metrics(predict(ema, splits.labeled_x, device, bf16), splits.labeled_y, n)
    result = _result(status, message, history, train, test, train_s, eval_s)
    last = rounds[-1] if rounds else {}
    result["semi"] = {
        "algorithm": "fixmatch",
        "rounds": rounds,
        "final_count": last.get("accepted", 0),
        "final_acc": last.get("pseudo_acc"),
    }
    return result
