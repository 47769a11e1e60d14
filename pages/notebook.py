"""The notebook, replayed: the practical session's questions in order, one button per experiment
(3 seeds through the job queue), and its results table with ours beside its own."""

import streamlit as st

from core.access import PermissionDenied
from core.views.charts import notebook_chart
from core.views.featuremap import pretrained_backbone
from core.views.notebook import SEEDS, STEPS, experiments, missing_seeds, results
from ui.common import config_caption, framed, plain, registry, store, try_splits
from ui.identity import me

framed("pages/notebook.py")
st.title("The notebook, replayed")
st.markdown(
    "The practical session *Small data and deep learning*, question by question. Each experiment runs with "
    f"{len(SEEDS)} seeds in the background (the Train page shows their progress); the table fills in as they finish."
)
splits = try_splits()
if splits is None:
    st.stop()

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

for step in STEPS:
    st.subheader(step.title)
    st.markdown(step.text)
    if step.key not in configs:
        continue
    cfg = configs[step.key]
    todo = missing_seeds(cfg, runs, queued)
    c = st.columns([3, 1])
    c[0].caption(config_caption(cfg))
    label = f"Run with {len(todo)} seed(s)" if todo else "All seeds done or queued"
    if c[1].button(label, key=f"nb_{step.key}", disabled=not todo, icon=":material/play_arrow:"):
        try:
            for seed in todo:
                registry().submit(cfg.with_(seed=seed), by=me())
            st.toast(f"Queued {len(todo)} run(s) of {step.model}")
            st.rerun()
        except PermissionDenied as err:
            st.error(str(err))

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
