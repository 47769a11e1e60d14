"""Try a model: a test image or an upload, and the top-3 classes from each chosen saved run."""

import pandas as pd
import streamlit as st

from core.models import ModelError
from core.runs.inference import MAX_UPLOAD_BYTES, ImageError, predictor, read_upload, top_k
from core.runs.store import StoreError
from ui.common import framed, pixelated_images, store, try_splits

framed("pages/try_model.py")
st.title("Try a model")
splits = try_splits()
if splits is None:
    st.stop()
runs_store = store()
usable = {r.run_id: r for r in runs_store.runs() if runs_store.has_weights(r.run_id)}
if not usable:
    st.info("No saved run has kept weights yet. Frozen-feature runs (transfer with *head*, selftrain, labelspread) "
            "always keep their head; for the others, tick *Keep the network's weights* on the Train page.")  # fmt: skip
    st.stop()


def describe(run_id: str) -> str:
    r = usable[run_id]
    acc = f"{r.metrics.test_acc:.1%}" if r.metrics.test_acc is not None else "?"
    return f"{r.config.method} {r.config.arch} · test {acc} · seed {r.config.seed} · {run_id[-6:]}"


@st.cache_resource(max_entries=6, show_spinner="Loading the run's weights...")
def loaded(run_id: str, mtime_ns: int, n_classes: int):
    return predictor(runs_store, usable[run_id], n_classes)


chosen = st.multiselect("Runs", list(usable), default=list(usable)[:3], format_func=describe, key="try_runs")
# A dataset without a test set (scored by cross-validation) offers its labeled images instead.
pool, pool_y, kind = (splits.test_x, splits.test_y, "test") if len(splits.test_y) else (
    splits.labeled_x, splits.labeled_y, "labeled")  # fmt: skip
source = st.radio("Image", [f"A {kind} image", "Upload a PNG or JPEG"], horizontal=True, key="try_source")
image, truth = None, None
if source != "Upload a PNG or JPEG":
    index = st.number_input(f"{kind.capitalize()} image number", 0, len(pool_y) - 1, 0, key="try_index")
    image, truth = pool[int(index)], splits.classes[int(pool_y[int(index)])]
else:
    upload = st.file_uploader(f"Your image (at most {MAX_UPLOAD_BYTES >> 20} MB; read in memory, never saved)",
                              type=["png", "jpg", "jpeg"], key="try_upload")  # fmt: skip
    if upload is not None:
        try:
            image = read_upload(upload.getvalue())
        except ImageError as err:
            st.error(f"**This file cannot be used:** {err}.")
if image is None:
    st.stop()

pixelated_images()
left, right = st.columns([1, 3])
caption = f"true class: {truth}" if truth else "as the models see it (32x32)"
left.image(image.permute(1, 2, 0).numpy(), width=160, caption=caption)
rows = []
for run_id in chosen:
    classes = usable[run_id].dataset.get("classes") or list(splits.classes)
    try:
        probs = loaded(run_id, runs_store.weights_path(run_id).stat().st_mtime_ns, len(classes))(image[None])[0]
    except (StoreError, ModelError) as err:
        right.warning(f"{describe(run_id)}: {err}")
        continue
    for rank, (name, p) in enumerate(top_k(probs, classes), 1):
        rows.append({"run": describe(run_id), "rank": rank, "class": name, "probability": p})
if rows:
    bar = st.column_config.ProgressColumn("probability", format="percent", min_value=0, max_value=1)
    right.dataframe(pd.DataFrame(rows), hide_index=True, column_config={"probability": bar})
