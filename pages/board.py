"""Class board: every recipe the class ran, pooled over all students' seeds (core.views.board); the lesson a
teacher pinned, one button per recipe; the board as CSV and Markdown."""

import streamlit as st

from core.access import PermissionDenied
from core.classroom.lesson import pinned
from core.views.board import board, board_export, pooled_runs, recipe_key, recipe_label
from core.views.charts import accuracy_bars
from core.views.tables import to_markdown
from ui.common import class_seeds, framed, percent_columns, queue_job, store, try_splits
from ui.identity import class_mode, roster

framed("pages/board.py")
st.title("Class board")
st.markdown(
    "Every recipe run here, **pooled over everyone's seeds**: with 100 labels one run is noise, and a class that "
    "runs one recipe thirty times measures it better than anyone alone. Finished runs with a full test pass count."
)
splits = try_splits()
if splits is None:
    st.stop()

lesson = pinned(roster())
labels = {recipe_key(p.cfg, splits.fingerprint): p.label for p in lesson}
if lesson:
    st.subheader("Today's lesson")
    st.caption("Your teacher pinned these recipes: run each with a seed of your own, and watch the board fill in.")
    for i, p in enumerate(lesson):
        cols = st.columns([2, 4, 1])
        cols[0].markdown(f"**{p.label}**")
        cols[1].caption(recipe_label(p.cfg))
        if cols[2].button("Run it", key=f"lesson_{i}", icon=":material/play_arrow:"):
            try:
                seed = class_seeds(p.cfg, splits, 1)[0] if class_mode() else None
                cfg = p.cfg.with_(seed=seed) if seed is not None else p.cfg
                queue_job(cfg)
                st.toast(f"Queued {p.label} with seed {cfg.seed}: follow it on the Train page")
            except PermissionDenied as err:
                st.error(str(err))

per_run = pooled_runs([r for r in store().runs() if r.dataset.get("fingerprint") == splits.fingerprint], labels)
if per_run.empty:
    st.info("No finished run on this dataset yet: the board fills in as runs finish.")
    st.stop()
summary = board(per_run)
st.subheader("Recipes, best mean first")
st.altair_chart(accuracy_bars(per_run.rename(columns={"recipe": "configuration"})), width="stretch")
st.caption("Bars: the mean over every run of the recipe, the line ± one standard deviation, a dot per run (hover: "
           "who, which seed).")  # fmt: skip
st.dataframe(summary.drop(columns=["key"]), hide_index=True,
             column_config=percent_columns("mean", "std", "best") | {"best_by": st.column_config.TextColumn(
                 "best run by")})  # fmt: skip
table = board_export(summary)
c = st.columns(2)
c[0].download_button("Download the board (CSV)", table.to_csv(index=False), "class-board.csv", "text/csv",
                     icon=":material/download:")  # fmt: skip
c[1].download_button("Download the board (Markdown)", to_markdown(table), "class-board.md", "text/markdown",
                     icon=":material/download:")  # fmt: skip
with st.expander("Markdown (copy with the button at the top right)"):
    st.code(to_markdown(table), language="markdown")
