"""Train: choose a method and preset, adjust the fields that matter for it, start background runs."""

from pathlib import Path

import streamlit as st

from core.access import PermissionDenied
from core.config import FIELD_SPECS, ConfigError, TrainConfig, is_used
from core.data.pipelines import PRESETS as AUGMENT_PRESETS
from core.data.splits import DataError
from core.methods.base import OPTIMISATION
from core.methods.registry import METHODS, default_preset, list_presets, preset, used_fields, validate
from core.methods.step_timings import kept_network_bytes, known_per_image
from core.models import REGISTRY, list_models, list_weight_files
from core.runs.crossval import check_labels
from core.runs.multiseed import stacks_here
from core.views.backbones import backbone_facts, published_weights
from ui.common import class_seeds, framed, plain, queue_job, settings, store, try_splits
from ui.estimate import show_estimate
from ui.identity import class_mode
from ui.jobs_view import show_class_jobs, show_jobs, show_refusal
from ui.widgets import field_inputs

framed("pages/train.py")

st.title("Train")
splits = try_splits()
if splits is None:
    st.stop()

top = st.columns([2, 1, 2])
method = top[0].radio(
    "Method", list(METHODS), horizontal=True, key="method", help="\n\n".join(
        f"**{m.name}**: {m.summary}" for m in METHODS.values()
    ),
)  # fmt: skip
presets = list_presets(method)
preset_name = top[1].selectbox(
    "Preset", presets, index=presets.index(default_preset(method)), key=f"preset_{method}",
    help="notebook: the practical session's recipe. recommended: our best recipe.",
)  # fmt: skip
base = preset(method, preset_name)
top[2].caption(f"**{method}**: {METHODS[method].help}")
k = f"{method}_{preset_name}"  # widget keys per preset: choosing a preset resets the form to its values
fields = used_fields(method)


def select_weights(arch: str) -> str:
    files = list_weight_files()
    published, where = published_weights(arch)
    options = ["Local checkpoint file", published]
    choice = st.radio("Pretrained weights", options, index=0 if files else 1, key=f"wsrc_{k}", horizontal=True)
    if choice == published:
        st.caption(f"Downloaded once and cached by {where}. Without network, use a local checkpoint file.")
        return "imagenet"
    picked = st.selectbox(
        "Checkpoint in the weights folder", [str(f) for f in files] or ["(none found)"], key=f"wfile_{k}",
        format_func=lambda f: Path(f).name,
    )  # fmt: skip
    if class_mode():  # the weights folder only: a free path would read any file of the server
        return "" if picked == "(none found)" else picked
    path = st.text_input("...or a path to a .pth state_dict", value="", key=f"wpath_{k}")
    return path.strip() or ("" if picked == "(none found)" else picked)


values = {"method": method, "preset": preset_name}
with st.expander("Model", expanded=True):
    archs = list_models()
    values["arch"] = st.selectbox(
        "Architecture", archs, index=archs.index(base.arch), key=f"arch_{k}",
        format_func=lambda a: f"{a} — {REGISTRY[a].summary}",
    )  # fmt: skip
    if "weights" in fields:
        values["weights"] = select_weights(values["arch"])
    field_inputs(
        [
            f
            for f in ("whiten_stem", "resolution", "finetune", "classifier", "normalize", "flip_features", "flip_test")
            if f in fields
        ],
        base,
        values,
        key=k,
    )
    chosen = base.with_(arch=values["arch"], resolution=values.get("resolution", base.resolution))
    st.caption(backbone_facts(chosen.arch, chosen.resolution, known_per_image(chosen, settings().cache_dir)))
with st.expander("Data and augmentation", expanded=True):
    cols = st.columns([3, 1])
    if "augment" in fields:
        aug_choice = cols[0].selectbox(
            "Augmentation", [*AUGMENT_PRESETS, "custom"],
            index=list(AUGMENT_PRESETS).index(base.augment) if base.augment in AUGMENT_PRESETS else 0,
            key=f"aug_{k}", help=FIELD_SPECS["augment"].help,
        )  # fmt: skip
        custom = "hflip|crop(padding=4)|erasing"
        values["augment"] = (
            cols[0].text_input("Custom pipeline", custom, key=f"augc_{k}") if aug_choice == "custom" else aug_choice
        )
    field_inputs(["n_labeled"], base, values, key=k, columns=1, caps={"n_labeled": len(splits.labeled_y)})
    if splits.cross_validated:  # no test set: scored over folds of the labeled images (core.runs.crossval)
        st.caption(f"*{splits.label}* has no test set: each run is scored by cross-validation over its "
                   f"{len(splits.labeled_y)} labeled images, and trains once per fold and once more for the model "
                   "it keeps.")  # fmt: skip
        field_inputs(["cv_folds"], base, values, key=k, columns=1)
        try:
            check_labels(splits)
        except DataError as err:
            st.error(f"**Cannot start yet:** {plain(err)}. Label them on the Your images page.")
            st.stop()
# The sections below start from the preset as the model's choices make it: transfer's centroid presets keep a
# trained head's settings, shown once the classifier is switched to trained.
model_choices = {f: values[f] for f in ("finetune", "classifier") if f in values}
base = preset(method, preset_name, **model_choices) if model_choices else base
optimisation = [f for f in OPTIMISATION if f in fields]
current = base.with_(**{f: v for f, v in values.items() if f in FIELD_SPECS})
if any(is_used(f, current) for f in optimisation):  # a head of class centroids trains nothing: no empty section
    with st.expander("Optimisation", expanded=True):
        field_inputs(optimisation, base, values, key=k)
else:
    field_inputs(optimisation, base, values, key=k)  # draws nothing: the hidden fields take their defaults
specific = [f for f in fields if f not in values and f not in OPTIMISATION and f not in ("seed", "eval_every")]
specific = [f for f in specific if f not in ("device", "precision", "eval_subset", "cv_folds")]
if [f for f in specific if is_used(f, current)]:  # no empty section
    with st.expander(f"{method} settings", expanded=True):
        field_inputs(specific, base, values, key=k, caps={"n_unlabeled": len(splits.unlabeled_x)})
else:
    field_inputs(specific, base, values, key=k)  # draws nothing: the hidden fields take their defaults
field_inputs([f for f in ("seed", "eval_every") if f in fields], base, values, key=k, columns=4)
c = st.columns(4)
repeats = c[0].number_input(
    "Repeat with N seeds", 1, 10, 1, key=f"rep_{k}",
    help="Queues N runs with seeds seed, seed+1, ...: accuracy on 100 labels is noisy. On a GPU, the seeds of "
    "a run that trains a whole network (scratch, fine-tuning) train together, at a fraction of N times the cost.",
)  # fmt: skip

try:
    cfg = validate(TrainConfig.from_dict(base.to_dict() | values))
    problem = None
except ConfigError as err:
    cfg, problem = None, str(err)

saved = None
if problem:
    st.error(f"**Cannot start:** {plain(problem)}")
else:
    with c[1]:
        show_estimate(cfg, splits)
    saved = store().find(cfg, splits.fingerprint)  # the cached result: shown, not recomputed
    if saved:
        m = saved.metrics
        scored = "cross-validated accuracy" if m.cross_validated else "test accuracy"
        st.success(
            f"This exact config (seed included) was already run: **{scored} {m.test_acc or 0:.1%}**, "
            f"train {m.train_acc:.1%}, {saved.timings.get('total_s', 0):.0f} s (run `{saved.run_id}`). "
            "See it on the Compare page, or run it again with another seed."
        )
if cfg is not None and cfg.keep_weights and METHODS[method].tests_images(cfg):
    size = kept_network_bytes(cfg.arch, len(splits.classes), settings().cache_dir)  # counted by a timing job
    shown = f"**{size / 2**20:.1f} MB**" if size is not None else "a size known once its step times are measured"
    st.caption(f"Keeps the network's weights: {shown} per run beside its record.")
if cfg is not None and repeats > 1 and stacks_here(cfg):
    st.caption(f"The {int(repeats)} seeds train together in one worker, stacked (`core.runs.multiseed`); each is saved "
               "as its own run.")  # fmt: skip
if class_mode() and cfg is not None:
    st.caption("In a class, each run takes a seed of this recipe that nobody in the class has used yet: the class "
               "board pools distinct seeds.")  # fmt: skip
label = "Run again with another seed" if saved else "Start"
if st.button(label, type="primary", disabled=cfg is None, icon=":material/play_arrow:", key="start"):
    seeds = class_seeds(cfg, splits, int(repeats)) if class_mode() else None
    if seeds is None:
        seed = cfg.seed
        while saved and store().find(cfg.with_(seed=seed), splits.fingerprint):  # the next unused seed
            seed += 1
        seeds = [seed + i for i in range(int(repeats))]
    queued = 0
    try:
        for seed in seeds:
            queue_job(cfg.with_(seed=seed))
            queued += 1
        st.toast(f"Queued {queued} run(s)")
    except PermissionDenied as err:
        st.error(f"Queued {queued} of {len(seeds)} run(s): {err}")

show_refusal()
st.subheader("Your runs" if class_mode() else "Runs")
show_jobs(splits)
if class_mode():
    st.subheader("The class's queue")
    show_class_jobs()
