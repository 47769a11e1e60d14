"""Why it works: feature maps (random vs ImageNet vs a trained run), label spreading replayed, the
pseudo-labels a semi-supervised run accepted, and the scratch preset's whitened first layer."""

from types import SimpleNamespace

import pandas as pd
import streamlit as st

from core.methods.pseudo_labels import mark_gallery
from core.views.charts import feature_map_chart, replay_accuracy_chart, spectrum_chart
from core.views.computed import ViewRequest
from core.views.featuremap import REPLAY_STEPS, Backbone, pretrained_backbone, random_backbone
from core.views.stem import stem_view
from ui.common import framed, pixelated_images, store, try_splits
from ui.computed import show_views

framed("pages/why.py")
st.title("Why it works")
st.caption("Each view is a diagnostic: the hidden labels of the unlabeled images colour and score it, and never "
           "enter training.")  # fmt: skip
splits = try_splits()
if splits is None:
    st.stop()
classes = list(splits.classes)


@st.cache_data(show_spinner=False, max_entries=16)
def whitened(index: int, fingerprint: str):
    """The whitening of the labeled images (a second for 50,000 of them) and one image through it."""
    return stem_view(splits.labeled_x, index)


def kept_networks() -> dict[str, str]:
    """run id -> label of the runs whose whole network was kept (their features can be mapped)."""
    out = {}
    runs_store = store()
    for r in runs_store.runs():
        if runs_store.weights_kind(r.run_id) == "network":
            out[r.run_id] = f"{r.config.method} {r.config.arch} · {r.metrics.test_acc or 0:.1%} · {r.run_id[-6:]}"
    return out


tab_map, tab_spread, tab_gallery, tab_stem = st.tabs(
    ["Feature map", "Label spreading, step by step", "Pseudo-label gallery", "Whitened stem"]
)

with tab_map:
    st.markdown(
        "Each dot is an image, placed by t-SNE so that images with similar **features** sit close together. "
        "Big diamonds are the 100 labeled images. A network that *understands* images puts each class in its own "
        "region: then 100 labels are enough to tell the regions apart. A random network's features mix them."
    )
    c = st.columns(4)
    sources = [name for name, n in (("test", len(splits.test_y)), ("unlabeled", len(splits.unlabeled_x))) if n]
    if not sources:
        st.info("This dataset has neither test nor unlabeled images to map: bring some on the Your images page.")
        st.stop()
    source = c[0].radio("Images", sources, horizontal=True, key="map_source")
    n = c[1].select_slider("Points", [250, 500, 1000, 2000], value=1000, key="map_n")
    res = c[2].select_slider("Resolution (px)", [32, 64, 96, 128], value=96, key="map_res",
                             help="Higher: better ImageNet features, slower (cost ~ resolution²).")  # fmt: skip
    trained = kept_networks()
    run_id = c[3].selectbox("A trained run (kept network)", ["(none)", *trained], key="map_run",
                            format_func=lambda i: trained.get(i, i))  # fmt: skip
    pre = pretrained_backbone(res)
    backbones = [random_backbone(pre), pre]
    if run_id != "(none)":
        cfg = store().load(run_id).config  # its weights are loaded by the worker that maps them
        backbones.append(Backbone(cfg.arch, "", cfg.resolution, cfg.normalize, f"run {run_id[-6:]} ({cfg.method})",
                                  None, run_id))  # fmt: skip
    if st.toggle("Draw the maps", key="maps_on", help="A worker computes a map once; then it is shown at once."):
        requests = [ViewRequest.of(bb, "map", source, n) for bb in backbones]
        results = show_views(requests, splits, key="maps", what=f"{len(requests)} maps")
        cols = st.columns(len(backbones))
        for col, bb, result in zip(cols, backbones, results, strict=True):
            if result is None:
                continue
            with col:
                frame = pd.DataFrame(result["frame"])
                st.altair_chart(feature_map_chart(frame, bb.label, classes), width="stretch")
                if result["knn"] is not None:
                    st.caption(
                        f"**{result['knn']:.1%}** of these images have the class of most of their 10 nearest "
                        "neighbours in feature space (10% is chance): how well the features separate the classes."
                    )
    else:
        st.info("Turn on *Draw the maps*: a random network and " + pre.label + " side by side.")

with tab_spread:
    st.markdown(
        "Label spreading on the ImageNet features of the labeled images and a sample of unlabeled ones: each "
        "iteration passes every point's label scores to its 10 nearest neighbours. Slide to watch the labels "
        "flow; grey points have received nothing yet."
    )
    c = st.columns([2, 1])
    n_spread = c[1].select_slider("Unlabeled points", [250, 500, 1000, 2000], value=1000, key="spread_n")
    step = c[0].select_slider("Spreading iterations", list(REPLAY_STEPS), value=0, key="spread_step")
    if not len(splits.unlabeled_x):
        st.info("Spreading needs unlabeled images, and this dataset has none.")
    elif st.toggle("Replay label spreading", key="spread_on"):
        pre = pretrained_backbone(st.session_state.get("map_res", 96))  # the Feature map tab's map of unlabeled images
        replay_req = ViewRequest.of(pre, "replay", "unlabeled", n_spread)
        map_result, replay_result = show_views([replay_req.map_request(), replay_req], splits, key="spread",
                                               what="the replay")  # fmt: skip
        if map_result is not None and replay_result is not None:
            frame = pd.DataFrame(map_result["frame"])
            replay = [SimpleNamespace(**s) for s in replay_result["steps"]]
            n_lab = len(splits.labeled_y)
            now = next(s for s in replay if s.step == step)
            current = [classes[int(c)] if r else "not reached" for c, r in zip(now.labels, now.reached, strict=True)]
            shown = frame.assign(**{"class": list(frame["class"][:n_lab]) + current})
            m1, m2 = st.columns([3, 2])
            m1.altair_chart(
                feature_map_chart(shown, f"after {step} iterations ({pre.label})", classes), width="stretch"
            )
            acc = pd.DataFrame({"iteration": [s.step for s in replay], "accuracy": [s.accuracy for s in replay],
                                "reached": [s.reached_fraction for s in replay]})  # fmt: skip
            scored = f", {now.accuracy:.1%} of their labels right" if now.accuracy is not None else ""
            m2.markdown(f"After {step} iterations: {now.reached_fraction:.0%} of the points reached{scored}. "
                        f"At {REPLAY_STEPS[-1]} these are label spreading's labels.")  # fmt: skip
            m2.altair_chart(replay_accuracy_chart(acc, step), width="stretch")
            m2.dataframe(acc, hide_index=True, column_config={
                "accuracy": st.column_config.NumberColumn("pseudo-label accuracy (hidden labels)", format="percent"),
                "reached": st.column_config.NumberColumn("points reached", format="percent")})  # fmt: skip
    else:
        st.info("Turn on *Replay label spreading* (it draws the ImageNet map of the unlabeled sample first).")

with tab_gallery:
    st.markdown(
        "What a self-training or label-spreading run accepted as pseudo-labels, per class: the most and the least "
        "confident, each marked ✓ or ✗ against the hidden label. Wrong *confident* pseudo-labels are the ones that "
        "hurt: the head learns them as facts."
    )
    semi = {r.run_id: r for r in store().runs() if r.diagnostics.get("gallery")}
    if not semi:
        st.info("No semi-supervised run with a gallery yet: train *selftrain* or *labelspread* on the Train page.")
    else:
        rid = st.selectbox("Run", list(semi), key="gallery_run", format_func=lambda i: (
            f"{semi[i].config.method} · {semi[i].metrics.test_acc or 0:.1%} · {i[-6:]}"))  # fmt: skip
        marked = mark_gallery(semi[rid].diagnostics["gallery"], splits.unlabeled_hidden_y)
        pixelated_images()
        for entry in marked:
            name = classes[entry["class"]] if entry["class"] < len(classes) else str(entry["class"])
            shown = entry["right"] + entry["wrong"]
            st.markdown(f"**{name}**: {entry['count']:,} accepted; of the {shown} shown, {entry['right']} right, "
                        f"{entry['wrong']} wrong")  # fmt: skip
            for end, title in (("most", "most confident"), ("least", "least confident")):
                if not entry[end]:
                    continue
                cols = st.columns(9)
                cols[0].caption(title)
                for col, e in zip(cols[1:], entry[end], strict=False):
                    if e["index"] >= len(splits.unlabeled_x):
                        continue  # a run on another dataset
                    col.image(splits.unlabeled_x[e["index"]].permute(1, 2, 0).numpy(), width=80)
                    mark = "" if e["right"] is None else (":green[✓]" if e["right"] else ":red[✗]")
                    col.markdown(f"{mark} {e['confidence']:.2f}")  # in colour: read from the back of a room

with tab_stem:
    st.markdown(
        "The scratch preset's network does not learn its first layer: it computes it from the labeled images. "
        "Their 2x2 patches (12 numbers each: 3 colours x 4 pixels) vary mostly in one direction, brightness, "
        "because neighbouring pixels and colours move together. The stem's filters are the directions of patch "
        "space, each scaled so that every direction has the same variance (*whitening*). From the first step the "
        "network sees edges and colour contrasts as strongly as brightness, which 100 images could not teach it: "
        "+1.6 points on the validation split at the same speed (`benchmarks/whiten_stem.py`)."
    )
    n_lab = len(splits.labeled_y)
    index = st.slider(f"Labeled image (0 to {n_lab - 1})", 0, n_lab - 1, 0, key="stem_image")
    view = whitened(index, splits.fingerprint)
    s1, s2 = st.columns([3, 2])
    s1.altair_chart(spectrum_chart(view.variances), width="stretch")
    top, faintest = view.variances[0] / sum(view.variances), view.variances[-1] / view.variances[0]
    s2.markdown(
        f"The first direction holds **{top:.0%}** of the variance, the last **{faintest:.1e}** times the first. "
        "Whitening divides each by its standard deviation; a small constant keeps the faintest ones from being "
        "blown up into noise."
    )
    pixelated_images()
    st.caption("The 12 filters, largest variance first (grey is zero; each scaled to its own range). The network "
               "uses each with both signs: 24 channels.")  # fmt: skip
    cols = st.columns(12)
    for i, col in enumerate(cols):
        # Filter 1 is brightness: every weight positive, so all white; its caption says so, or it looks empty.
        col.image(view.filters[i], width=48, caption="1: brightness" if i == 0 else str(i + 1))
    st.caption(f"Labeled image {index} ({classes[int(splits.labeled_y[index])]}) and what each filter makes of it:")
    cols = st.columns(13)
    cols[0].image(splits.labeled_x[index].permute(1, 2, 0).numpy(), width=72, caption="image")
    for i, col in enumerate(cols[1:]):
        col.image(view.channels[i], width=72, caption=str(i + 1))
