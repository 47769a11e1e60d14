"""The notebook, replayed: the practical session's questions in order, one button per experiment
(3 seeds through the job queue), and its results table with ours beside its own."""

import streamlit as st

from core.access import PermissionDenied
from core.data.splits import CIFAR10_CLASSES
from core.methods.step_timings import EstimateUnavailable, estimate_seconds
from core.views.charts import notebook_chart
from core.views.featuremap import pretrained_backbone
from core.views.notebook import SEEDS, STEPS, experiments, missing_seeds, results
from ui.common import config_caption, framed, plain, queue_job, registry, settings, store, try_splits
from ui.identity import me
from ui.lesson import show_prepare

framed("pages/notebook.py")
st.title("The notebook, replayed")
st.markdown(
    "The practical session *Small data and deep learning*, question by question. Each experiment runs with "
    f"{len(SEEDS)} seeds in the background (the Train page shows their progress); the table fills in as they finish."
)
splits = try_splits()
if splits is None:
    st.stop()
if splits.source != "cifar10" and splits.classes != CIFAR10_CLASSES:
    st.warning(f"This page is about **CIFAR-10**, the notebook's dataset; the dataset in use is *{splits.label}*. "
               "Its experiments run on it all the same, but the notebook's numbers beside them are CIFAR-10's. "
               "Choose CIFAR-10 in the sidebar to replay the notebook itself.")  # fmt: skip

local = pretrained_backbone()
choices = {"resnet18|imagenet": "ResNet-18, torchvision's ImageNet weights (downloaded, as in the notebook)"}
if local.weights != "imagenet":
    choices = {f"{local.arch}|{local.weights}": f"{local.label}: a local checkpoint (works offline)"} | choices
picked = st.radio("Pretrained network for transfer and the bonus", list(choices), format_func=choices.get,
                  key="nb_backbone")  # fmt: skip
arch, weights = picked.split("|", 1)
if weights != "imagenet":
    st.caption(f"The notebook fine-tunes ResNet-18; this replay uses **{arch}** from `{plain(weights)}` instead, "
               "so its transfer numbers are not the notebook's model.")  # fmt: skip
configs = experiments(arch, weights, min(100, len(splits.labeled_y)))
runs = store().runs()
queued = [j.cfg for j in registry().jobs() if not j.done and j.kind == "train"]


def seconds_per_seed(cfg) -> float | None:
    """The estimate from step times a worker measured (None before any has), never a measurement here."""
    try:
        return estimate_seconds(cfg, splits, cache_dir=settings().cache_dir, busy=True)
    except EstimateUnavailable:
        return None


def queue(todo: dict[str, list[int]]) -> bool:
    """Queues the seeds of each experiment; False (and why) when the class's limit stopped it."""
    done = 0
    try:
        for key, seeds in todo.items():
            for seed in seeds:
                queue_job(configs[key].with_(seed=seed))
                done += 1
        st.toast(f"Queued {done} run(s): the Train page shows their progress")
        return True
    except PermissionDenied as err:
        st.error(f"Queued {done} run(s), then: {err}")
        return False


times = {key: seconds_per_seed(cfg) for key, cfg in configs.items()}
todo = {key: missing_seeds(cfg, runs, queued) for key, cfg in configs.items()}
left = [times[k] * len(seeds) for k, seeds in todo.items() if seeds and times[k] is not None]
unknown = [k for k, seeds in todo.items() if seeds and times[k] is None]
c = st.columns([3, 1])
if not any(todo.values()):
    c[0].caption("Every experiment has its seeds done or queued.")
else:
    about = f"about **{sum(left) / 60:.0f} min** here, one run after another" if left else "a time not known yet"
    c[0].markdown(f"The whole notebook: {sum(len(s) for s in todo.values())} runs not done yet, {about}"
                  + (f" (and {len(unknown)} experiment(s) whose step times are not measured yet)" if unknown and left
                     else "") + ".")  # fmt: skip
if c[1].button("Run the whole notebook", key="nb_all", disabled=not any(todo.values()), type="primary",
               icon=":material/playlist_play:") and queue(todo):  # fmt: skip
    st.rerun()

if me().teacher:
    show_prepare({step.title: configs[step.key] for step in STEPS if step.key in configs}, splits)

for step in STEPS:
    st.subheader(step.title)
    st.markdown(step.text)
    if step.key not in configs:
        continue
    cfg, seeds, per_seed_s = configs[step.key], todo[step.key], times[step.key]
    c = st.columns([3, 1])
    took = f"≈ {per_seed_s / 60:.1f} min per seed here" if per_seed_s is not None else "time per seed not known yet"
    c[0].caption(f"{config_caption(cfg)} · {took}")
    label = f"Run with {len(seeds)} seed(s)" if seeds else "All seeds done or queued"
    if c[1].button(label, key=f"nb_{step.key}", disabled=not seeds, icon=":material/play_arrow:") and queue(
        {step.key: seeds}
    ):
        st.rerun()

st.subheader("Results, in the notebook's format")
table, per_seed = results(configs, runs)
st.dataframe(table, hide_index=True)
st.caption("Ours: mean ± standard deviation over seeds, on this dataset. The notebook's: one run, 100 epochs, the "
           "original CIFAR-10.")  # fmt: skip
st.subheader("Summary plot")
if per_seed.empty:
    st.info("The plot appears when the first experiment has finished.")
else:
    st.altair_chart(notebook_chart(per_seed), width="stretch")
    st.caption("Bars: our mean, with ± one standard deviation and a dot per seed; red ticks: the notebook's numbers.")
