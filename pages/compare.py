"""Compare: saved runs in a table, learning curves, accuracy over seeds, one run in detail."""

import hashlib

import streamlit as st

from core.access import PermissionDenied
from core.data.splits import DataError
from core.runs.store import StoreError, same_test_set
from core.views.backbones import STAND_IN_NOTE, pretraining_frame
from core.views.charts import (
    accuracy_bars,
    accuracy_frame,
    accuracy_summary,
    confusion_heatmap,
    history_frame,
    learning_curves,
    per_class_bars,
    semi_diagnostics,
    semi_frame,
)
from core.views.tables import results_table, runs_frame, to_markdown
from ui.common import framed, get_splits, percent_columns, pixelated_images, plain, shown_config, store
from ui.datasets import active
from ui.identity import class_mode, me
from ui.jobs_view import offer_evaluation

framed("pages/compare.py")

st.title("Compare runs")
if flash := st.session_state.pop("flash", None):  # the outcome of an import or delete, across the rerun
    st.success(flash)
runs_store = store()
runs = runs_store.runs()
for warning in runs_store.warnings:
    st.warning(f"Skipped an unreadable file in the runs folder: {plain(warning)}")
you = me()

with st.expander("Import runs from an export (.zip with weights, or .json)"):
    upload = st.file_uploader("Exported runs", type=["zip", "json"], key="import")
    if upload is not None and st.button("Import", key="do_import"):
        try:
            added = runs_store.import_file(upload.getvalue(), by=you)
            new = len(added) - len(runs_store.already)
            again = f"; {len(runs_store.already)} were here already" if runs_store.already else ""
            yours = f", now yours ({you.name})" if class_mode() and new else ""
            st.session_state["flash"] = f"Imported {new} new run(s){yours}{again}."
            st.rerun()
        except StoreError as err:
            st.error(f"Nothing imported: {plain(err)}")

if not runs:
    st.info("No saved runs yet: start one on the Train page.")
    st.stop()

offer_evaluation(runs)
frame = runs_frame(runs)
f0, f1, f2, f3 = st.columns(4)
datasets = f0.multiselect("Dataset", sorted(frame["dataset"].unique()), key="f_dataset")
methods = f1.multiselect("Method", sorted(frame["method"].unique()), key="f_method")
statuses = f2.multiselect("Status", sorted(frame["status"].unique()), key="f_status")
text = f3.text_input("Search (model, preset, augmentation)", key="f_text")
view = frame
if datasets:
    view = view[view["dataset"].isin(datasets)]
if methods:
    view = view[view["method"].isin(methods)]
if statuses:
    view = view[view["status"].isin(statuses)]
if text:
    hay = view["model"] + " " + view["preset"] + " " + view["augment"]
    view = view[hay.str.contains(text, case=False, regex=False)]
st.dataframe(
    view.drop(columns=["config_hash"]), hide_index=True, column_config=percent_columns("train_acc", "test_acc")
)

by_id = {r.run_id: r for r in runs}
default = [i for i in view["run_id"] if by_id[i].status == "finished"][:8]
# Keyed by the filters: when they change, the selection starts again from the filtered runs (a kept key would
# hold on to the runs of the filters before).
filters = f"{sorted(datasets)}|{sorted(methods)}|{sorted(statuses)}|{text}"
chosen = st.multiselect("Runs to compare", list(view["run_id"]), default=default,
                        key=f"chosen_{hashlib.sha1(filters.encode()).hexdigest()[:8]}")  # fmt: skip
selected = [by_id[i] for i in chosen]
if not selected:
    st.info("Select runs to compare.")
    st.stop()

st.subheader("Learning curves")
curves = history_frame(selected)
if curves.empty:
    st.caption("The selected runs have no per-epoch history.")
else:
    st.altair_chart(learning_curves(curves), width="content")

semi_rows = semi_frame(selected)
if not semi_rows.empty:
    st.subheader("Pseudo-labels per round")
    st.altair_chart(semi_diagnostics(semi_rows), width="content")

if any(r.metrics.cross_validated for r in selected):
    st.info(
        "Runs on a dataset without a test set are scored by **k-fold cross-validation** over its labeled "
        "images: their accuracy is the folds' mean; the results table gives the spread over the folds."
    )

st.subheader("Test accuracy per configuration (mean ± std over seeds)")
acc = accuracy_frame(selected)
if acc.empty:
    st.caption("No test accuracy among the selected runs.")
else:
    st.altair_chart(accuracy_bars(acc), width="stretch")
    summary = accuracy_summary(acc)
    st.dataframe(summary, hide_index=True, column_config=percent_columns("mean", "std"))

pretrained = pretraining_frame(selected)
if not pretrained.empty:
    st.subheader("What pretraining buys: transfer accuracy per backbone and weights (mean ± std over seeds)")
    st.altair_chart(accuracy_bars(pretrained), width="stretch")
    st.caption(STAND_IN_NOTE)

st.subheader("Results table (one row per recipe, mean ± std over its seeds)")
table = results_table(selected)
st.dataframe(table, hide_index=True)
c1, c2 = st.columns(2)
c1.download_button("Download CSV", table.to_csv(index=False), "results.csv", "text/csv", icon=":material/download:")
mine = [i for i in chosen if you.may_change(by_id[i].owner)]  # export: only your own runs (core checks too)
with_weights = [i for i in mine if runs_store.has_weights(i)]
if len(mine) < len(chosen):
    c2.caption(f"{len(chosen) - len(mine)} of the selected runs are classmates': the export holds only yours.")
if mine and with_weights:  # a zip: the records and the weights they kept
    c2.download_button(
        f"Export {len(mine)} run(s) (zip, {len(with_weights)} with weights)",
        lambda: runs_store.export_archive(mine, by=you),  # zipped on click, not every rerun: networks are tens of MB
        "runs.zip", "application/zip", icon=":material/ios_share:",
    )  # fmt: skip
elif mine:
    c2.download_button(f"Export {len(mine)} run(s) (JSON)", runs_store.export_json(mine, by=you), "runs.json",
                       "application/json", icon=":material/ios_share:")  # fmt: skip
with st.expander("Markdown (copy with the button at the top right)"):
    st.code(to_markdown(table), language="markdown")

st.subheader("One run in detail")
detail_id = st.selectbox("Run", chosen, key="detail")
run = by_id[detail_id]
m = run.metrics
classes = run.dataset.get("classes") or [str(i) for i in range(len(m.per_class_acc))]
if m.confusion:
    d1, d2 = st.columns(2)
    with d1:
        st.markdown("**Confusion matrix** (rows: true class)")
        st.altair_chart(confusion_heatmap(m.confusion, classes), width="content")
    with d2:
        st.markdown("**Per-class test accuracy**")
        st.altair_chart(per_class_bars(m.per_class_acc, classes), width="content")
    wrong = m.wrong_indices[:24]
    try:
        splits = get_splits(*active())
    except DataError:
        splits = None
    if wrong and splits is not None and same_test_set(run, splits.fingerprint):
        # A cross-validated run's mistakes are labeled images, each predicted by the fold that held it out.
        images, truths = (splits.labeled_x, splits.labeled_y) if m.cross_validated else (splits.test_x, splits.test_y)
        st.markdown(f"**{'Labeled images (out of fold)' if m.cross_validated else 'Test images'} it got wrong** "
                    "(true → predicted)")  # fmt: skip
        pixelated_images()
        cols = st.columns(8)  # 96 px tiles: readable on a projector, and "automobile" fits on one line
        for n, (i, p) in enumerate(zip(wrong, m.wrong_pred, strict=False)):
            if i < len(truths):
                cols[n % 8].image(images[i].permute(1, 2, 0).numpy(), width=96,
                                  caption=f"{classes[int(truths[i])]} → {classes[p]}")  # fmt: skip
    elif wrong:
        st.caption("The run was made on another dataset than the one loaded: its test images are not shown.")
else:
    st.caption(f"This run has no evaluation ({run.status}: {plain(run.message)}).")
if kind := runs_store.weights_kind(run.run_id):
    st.caption(f"Weights kept: {kind}, {runs_store.weights_bytes(run.run_id) / 1024:,.0f} KB "
               "(*Try a model* uses them).")  # fmt: skip
else:
    st.caption("Weights: missing or unreadable. To keep a network's, tick *Keep the network's weights* on the "
               "Train page.")  # fmt: skip
st.json({"owner": run.owner, "config": shown_config(run.config), "timings": run.timings, "env": run.env},
        expanded=False)  # fmt: skip

st.subheader("Delete runs")
deletable = [r.run_id for r in runs if you.may_change(r.owner)]
if class_mode() and not you.teacher:
    st.caption("You can delete your own runs; your classmates' are theirs.")
doomed = st.multiselect("Runs to delete", deletable, key="doomed")
sure = st.checkbox("Yes, delete these runs for good", key="sure")
if st.button("Delete", disabled=not (doomed and sure), icon=":material/delete:", key="delete"):
    try:
        for run_id in doomed:
            runs_store.delete(run_id, by=you)
        st.session_state["flash"] = f"Deleted {len(doomed)} run(s)."
        st.rerun()
    except PermissionDenied as err:  # the page offers only yours; core decides
        st.error(str(err))
