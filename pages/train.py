"""Train: choose a method and preset, adjust the config, start background runs, watch them live."""

import pandas as pd
import streamlit as st

from core.augment import PRESETS as AUGMENT_PRESETS
from core.charts import history_frame, learning_curves
from core.config import (
    FINETUNE,
    METHODS,
    OPTIMIZERS,
    SCHEDULES,
    SEMI_ALGOS,
    ConfigError,
    TrainConfig,
    list_presets,
    preset,
)
from core.config import validate as validate_config
from core.estimate import estimate_seconds
from core.models import REGISTRY, list_models, list_weight_files
from pages.common import config_caption, framed, registry, store, try_splits

HELP = {
    "lr": "Adam at lr 0.1 (the notebook's choice) takes huge steps: the loss jumps around and BatchNorm "
    "statistics go wild. Adam works near 1e-3; SGD with momentum near 0.01-0.1.",
    "resolution": "ImageNet features were learned on 224 px photos. At 32 px a pretrained network sees blurry "
    "thumbnails and its features are weak; upsampling to 96-128 px recovers much of their power.",
    "finetune": "head: the backbone is frozen and its features are computed once, so only a linear layer "
    "learns (seconds). last: the last block adapts too. all: every weight moves, which with 100 labels "
    "easily overfits and forgets ImageNet.",
    "epochs": "With 100 images an epoch is a handful of steps: think in steps, not epochs.",
    "augment": "A preset name or a pipeline such as hflip|crop(padding=4); preview them on the Data page.",
    "weight_decay": "Pulls weights towards zero; a mild regulariser, more useful with SGD than with Adam.",
    "label_smoothing": "Targets of 0.9/0.01 instead of 1/0: the network is not pushed to infinite confidence "
    "on 100 images.",
    "threshold": "Only unlabeled images predicted with at least this confidence get a pseudo-label.",
    "per_class": "Self-training: at most this many new pseudo-labels per class and round, so that easy classes "
    "do not swamp the others (0 means no cap).",
    "normalize": "Subtract the ImageNet mean and divide by its std: what pretrained weights expect.",
    "flip": "Frozen features only: average each image's features with its mirror image's. Twice the feature "
    "time, steadier features (+2 to 3 points for label spreading on our validation split).",
    "semi": "selftrain: fit the head, pseudo-label the most confident unlabeled images, refit, repeat. "
    "labelspread: labels flow along a nearest-neighbour graph of all images first, then the head learns from "
    "the most confident. fixmatch: end to end, consistency between weak and strong views (GPU-sized).",
    "knn": "Each image is linked to its k most similar images; labels spread along those links.",
}

framed("pages/train.py")

st.title("Train")
splits = try_splits()
if splits is None:
    st.stop()

top = st.columns([1, 1, 2])
method = top[0].radio(
    "Method",
    METHODS,
    horizontal=True,
    key="method",
    help="scratch: random init. transfer: ImageNet weights. semi: also uses the unlabeled images.",
)
preset_name = top[1].selectbox(
    "Preset",
    list_presets(method),
    key=f"preset_{method}",
    help="notebook: the practical session's recipe. recommended: our best recipe.",
)
base = preset(method, preset_name, weights="imagenet") if method != "scratch" else preset(method, preset_name)
top[2].caption(f"Defaults from **{method} / {preset_name}**: {config_caption(base)}")
k = f"{method}_{preset_name}"  # widget keys per preset: choosing a preset resets the form to its values


def select_weights() -> str:
    files = list_weight_files()
    options = ["Local checkpoint file", "torchvision ImageNet weights (download)"]
    choice = st.radio("Pretrained weights", options, index=0 if files else 1, key=f"wsrc_{k}", horizontal=True)
    if choice.startswith("torchvision"):
        st.caption("Downloaded once and cached by torchvision. Without network, use a local checkpoint file.")
        return "imagenet"
    picked = st.selectbox(
        "Checkpoint in the weights folder", [str(f) for f in files] or ["(none found)"], key=f"wfile_{k}"
    )
    path = st.text_input("...or a path to a .pth state_dict", value="", key=f"wpath_{k}")
    return path.strip() or ("" if picked == "(none found)" else picked)


values = {"method": method, "preset": preset_name}
with st.expander("Model", expanded=True):
    cols = st.columns(4)
    archs = list_models()
    values["arch"] = cols[0].selectbox(
        "Architecture",
        archs,
        index=archs.index(base.arch),
        key=f"arch_{k}",
        format_func=lambda a: f"{a} — {REGISTRY[a].summary}",
    )
    if method != "scratch":
        values["resolution"] = cols[1].select_slider(
            "Resolution (px)",
            [32, 64, 96, 128, 160, 224],
            value=base.resolution,
            key=f"res_{k}",
            help=HELP["resolution"],
        )
        values["finetune"] = cols[2].selectbox(
            "What trains", FINETUNE, index=FINETUNE.index(base.finetune), key=f"ft_{k}", help=HELP["finetune"]
        )
        values["normalize"] = cols[3].checkbox(
            "ImageNet normalisation", base.normalize, key=f"norm_{k}", help=HELP["normalize"]
        )
        values["flip_features"] = cols[3].checkbox(
            "Flip-averaged features", base.flip_features, key=f"flipf_{k}", help=HELP["flip"]
        )
        values["weights"] = select_weights()
with st.expander("Data and augmentation", expanded=True):
    cols = st.columns([3, 1])
    aug_choice = cols[0].selectbox(
        "Augmentation",
        [*AUGMENT_PRESETS, "custom"],
        index=list(AUGMENT_PRESETS).index(base.augment) if base.augment in AUGMENT_PRESETS else 0,
        key=f"aug_{k}",
        help=HELP["augment"],
    )
    values["augment"] = (
        cols[0].text_input("Custom pipeline", "hflip|crop(padding=4)|erasing", key=f"augc_{k}")
        if aug_choice == "custom"
        else aug_choice
    )
    values["n_labeled"] = cols[1].number_input(
        "Labeled images",
        10,
        len(splits.labeled_y),
        base.n_labeled if base.n_labeled <= len(splits.labeled_y) else len(splits.labeled_y),
        key=f"nl_{k}",
    )
with st.expander("Optimisation", expanded=True):
    c = st.columns(4)
    values["epochs"] = c[0].number_input("Epochs", 1, 5000, base.epochs, key=f"ep_{k}", help=HELP["epochs"])
    values["batch_size"] = c[1].number_input("Batch size", 1, 1024, base.batch_size, key=f"bs_{k}")
    values["optimizer"] = c[2].selectbox("Optimizer", OPTIMIZERS, OPTIMIZERS.index(base.optimizer), key=f"opt_{k}")
    values["lr"] = c[3].number_input("Learning rate", 0.0, 10.0, base.lr, format="%.5f", key=f"lr_{k}", help=HELP["lr"])
    c = st.columns(4)
    values["schedule"] = c[0].selectbox("Schedule", SCHEDULES, SCHEDULES.index(base.schedule), key=f"sch_{k}")
    values["warmup_epochs"] = c[1].number_input("Warm-up epochs", 0, 1000, base.warmup_epochs, key=f"wu_{k}")
    values["weight_decay"] = c[2].number_input(
        "Weight decay", 0.0, 1.0, base.weight_decay, format="%.5f", key=f"wd_{k}", help=HELP["weight_decay"]
    )
    values["label_smoothing"] = c[3].number_input(
        "Label smoothing", 0.0, 0.5, base.label_smoothing, key=f"ls_{k}", help=HELP["label_smoothing"]
    )
    c = st.columns(4)
    values["momentum"] = c[0].number_input("Momentum (SGD)", 0.0, 0.999, base.momentum, key=f"mom_{k}")
    values["nesterov"] = c[1].checkbox("Nesterov", base.nesterov, key=f"nes_{k}")
    values["step_every"] = c[2].number_input("Step schedule: every N epochs", 1, 5000, base.step_every, key=f"se_{k}")
    values["step_gamma"] = c[3].number_input("Step schedule: factor", 0.001, 1.0, base.step_gamma, key=f"sg_{k}")
if method == "semi":
    with st.expander("Semi-supervised", expanded=True):
        c = st.columns(4)
        values["semi"] = c[0].selectbox(
            "Algorithm", SEMI_ALGOS, SEMI_ALGOS.index(base.semi), key=f"semi_{k}", help=HELP["semi"]
        )
        values["n_unlabeled"] = c[1].number_input(
            "Unlabeled images (0 = all)",
            0,
            len(splits.unlabeled_x),
            min(base.n_unlabeled, len(splits.unlabeled_x)),
            key=f"nu_{k}",
        )
        values["threshold"] = c[2].number_input(
            "Confidence threshold", 0.0, 1.0, base.threshold, key=f"thr_{k}", help=HELP["threshold"]
        )
        if values["semi"] == "labelspread":
            values["knn"] = c[3].number_input("Neighbours (k)", 1, 200, base.knn, key=f"knn_{k}", help=HELP["knn"])
            values["per_class"] = c[3].number_input(
                "Pseudo-labels per class", 0, 100000, base.per_class, key=f"pc_{k}", help=HELP["per_class"]
            )
        elif values["semi"] == "selftrain":
            values["rounds"] = c[3].number_input("Rounds", 1, 50, base.rounds, key=f"rounds_{k}")
            values["per_class"] = c[3].number_input(
                "Per class and round", 0, 100000, base.per_class, key=f"pc_{k}", help=HELP["per_class"]
            )
        else:
            values["mu"] = c[3].number_input("Unlabeled per labeled (mu)", 1, 16, base.mu, key=f"mu_{k}")
            values["lambda_u"] = c[3].number_input("Unlabeled loss weight", 0.0, 10.0, base.lambda_u, key=f"lu_{k}")
            values["ema"] = c[3].number_input("EMA decay", 0.0, 0.9999, base.ema, format="%.4f", key=f"ema_{k}")
c = st.columns(4)
values["seed"] = c[0].number_input("Seed", 0, 2**31 - 1, 0, key=f"seed_{k}")
values["eval_every"] = c[1].number_input("Test check every N epochs (0: off)", 0, 5000, base.eval_every, key=f"ee_{k}")
repeats = c[2].number_input(
    "Repeat with N seeds",
    1,
    10,
    1,
    key=f"rep_{k}",
    help="Queues N runs with seeds seed, seed+1, ...: accuracy on 100 labels is noisy.",
)

try:
    cfg = validate_config(TrainConfig.from_dict(base.to_dict() | values))
    problem = None
except ConfigError as err:
    cfg, problem = None, str(err)

saved = None
if problem:
    st.error(f"**Cannot start:** {problem}")
else:
    n_unl = len(splits.unlabeled_x)
    try:
        seconds = estimate_seconds(cfg, cfg.n_labeled, len(splits.test_y), n_unl)
        c[3].metric(
            "Estimated time",
            f"{seconds / 60:.1f} min" if seconds > 90 else f"{seconds:.0f} s",
            help="From a few timed steps on this device, times the run's steps.",
        )
    except Exception as err:  # an estimate must never block a run
        c[3].caption(f"No estimate ({type(err).__name__})")
    saved = store().find(cfg, splits.fingerprint)  # the cached result: shown, not recomputed
    if saved:
        m = saved["metrics"]
        st.success(
            f"This exact config (seed included) was already run: **test accuracy {m['test_acc']:.1%}**, "
            f"train {m['train_acc']:.1%}, {saved['timings'].get('total_s', 0):.0f} s (run `{saved['run_id']}`). "
            "See it on the Compare page, or run it again with another seed."
        )
label = "Run again with another seed" if saved else "Start"
if st.button(label, type="primary", disabled=cfg is None, icon=":material/play_arrow:", key="start"):
    seed = cfg.seed
    while saved and store().find(cfg.with_(seed=seed), splits.fingerprint):  # the next unused seed
        seed += 1
    for i in range(int(repeats)):
        registry().submit(cfg.with_(seed=seed + i))
    st.toast(f"Queued {int(repeats)} run(s)")


def show_job(job) -> None:
    reg = registry()
    head = st.columns([4, 1])
    head[0].markdown(f"**Job {job.job_id}** · {config_caption(job.cfg)} · **{job.state}**")
    if job.state == "queued":
        head[0].caption(f"Waiting: position {reg.queue_position(job.job_id)} in the queue")
    if not job.done and head[1].button("Stop", key=f"stop_{job.job_id}", icon=":material/stop:"):
        reg.stop(job.job_id)
    if job.state == "running":
        eta = job.eta_seconds()
        text = f"epoch {len(job.history)}/{job.cfg.epochs}" + (f" · ETA {eta:.0f} s" if eta is not None else "")
        st.progress(job.fraction, text=text if job.history else (job.progress_note or "starting..."))
    if job.history:
        frame = history_frame(
            [{"config": job.cfg.to_dict(), "run_id": f"job-{job.job_id}", "history": list(job.history)}]
        )
        st.altair_chart(learning_curves(frame, height=160), width="content")
    if job.done and job.record:
        m = job.record["metrics"]
        if m.get("test_acc") is not None:
            st.markdown(
                f"Test accuracy **{m['test_acc']:.1%}** on {len(splits.test_y):,} images, "
                f"train {m['train_acc']:.1%} · saved as `{job.run_id}`"
            )
    if job.message:
        (st.error if job.state in ("failed", "diverged") else st.info)(job.message)


def active_jobs() -> bool:
    return any(not j.done for j in registry().jobs())


@st.fragment(run_every=1.0 if active_jobs() else None)
def show_jobs() -> None:
    jobs = sorted(registry().jobs(), key=lambda j: j.job_id, reverse=True)[:6]
    if not jobs:
        st.caption("No runs started in this server session yet.")
        return
    st.dataframe(
        pd.DataFrame([{"job": j.job_id, "state": j.state, "config": config_caption(j.cfg)} for j in jobs]),
        hide_index=True,
    )
    for job in jobs:
        with st.container(border=True):
            show_job(job)


st.subheader("Runs")
show_jobs()
