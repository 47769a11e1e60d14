"""Altair charts as pure functions from tidy DataFrames (or run records) to `alt.Chart`.

They hold no Streamlit: the pages render them, the tests inspect their `to_dict()`.
"""

from __future__ import annotations

import textwrap

import altair as alt
import pandas as pd

from core.runs.record import RunRecord
from core.views.board import distinct_labels, recipe_key


def run_label(record: RunRecord) -> str:
    c = record.config
    return f"{c.method} {c.arch} {c.preset} s{c.seed} · {record.run_id[-6:]}".replace("  ", " ")


def config_label(record: RunRecord) -> str:
    """Runs that differ only by seed share this label (mean and spread are taken over it)."""
    c = record.config
    res = f" {c.resolution}px" if c.weights else ""
    return f"{c.method} {c.arch}{res} {c.preset or 'custom'} · {c.augment or 'none'}"


def history_frame(runs: list[RunRecord]) -> pd.DataFrame:
    """Long format: one row per (run, epoch or round, metric)."""
    rows = []
    for r in runs:
        label = run_label(r)
        for h in r.history:
            for metric in ("train_loss", "train_acc", "test_acc"):
                if h.get(metric) is not None:
                    rows.append({"run": label, "epoch": h["index"], "metric": metric, "value": h[metric]})
    return pd.DataFrame(rows, columns=["run", "epoch", "metric", "value"])


def learning_curves(frame: pd.DataFrame, height: int = 220, width: int = 260) -> alt.Chart:
    """Loss and accuracy against epochs, coloured by run; hovering a run highlights it."""
    hover = alt.selection_point(fields=["run"], on="pointerover", clear="pointerout")
    base = alt.Chart(frame).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(format="d", tickMinStep=1)),
        y=alt.Y("value:Q", title=None),
        color=alt.Color("run:N", legend=alt.Legend(orient="bottom", columns=1, labelLimit=400)),
        opacity=alt.condition(hover, alt.value(1.0), alt.value(0.25)),
        tooltip=["run:N", "metric:N", "epoch:Q", alt.Tooltip("value:Q", format=".3f")],
    )
    lines = base.mark_line(point=alt.OverlayMarkDef(size=18)).add_params(hover)
    return (
        lines.properties(height=height, width=width)
        .facet(column=alt.Column("metric:N", title=None, sort=["train_loss", "train_acc", "test_acc"]))
        .resolve_scale(y="independent")
    )


def accuracy_frame(runs: list[RunRecord], label=None) -> pd.DataFrame:
    """One row per run with a test accuracy, labelled by its recipe (runs that differ only by seed pool);
    label: how a run reads (default config_label)."""
    label = label or config_label
    rows = [
        {"configuration": label(r), "seed": r.config.seed, "test_acc": r.metrics.test_acc,
         "key": recipe_key(r.config, r.dataset.get("fingerprint", ""))}
        for r in runs
        if r.metrics.test_acc is not None
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["configuration", "seed", "test_acc", "key"])
    return distinct_labels(frame, "configuration").drop(columns=["key"])


def accuracy_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count of test accuracy per configuration."""
    g = frame.groupby("configuration")["test_acc"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1).fillna(0.0), "runs": g.size()}).reset_index()
    return out.sort_values("mean", ascending=False)


def accuracy_bars(frame: pd.DataFrame) -> alt.LayerChart:
    """Mean test accuracy per configuration as bars, +- one standard deviation, a dot per seed."""
    summary = accuracy_summary(frame)
    summary["low"] = (summary["mean"] - summary["std"]).clip(lower=0.0)  # an accuracy stays within 0-100%
    summary["high"] = (summary["mean"] + summary["std"]).clip(upper=1.0)
    order = list(summary["configuration"])
    y = alt.Y("configuration:N", sort=order, title=None, axis=alt.Axis(labelLimit=420))
    x_scale = alt.Scale(domain=[0, 1])
    bars = (
        alt.Chart(summary)
        .mark_bar(opacity=0.5, height={"band": 0.7})
        .encode(
            x=alt.X("mean:Q", title="test accuracy", axis=alt.Axis(format="%"), scale=x_scale),
            y=y,
            tooltip=[
                "configuration:N",
                alt.Tooltip("mean:Q", format=".1%"),
                alt.Tooltip("std:Q", format=".1%"),
                "runs:Q",
            ],
        )
    )
    errors = alt.Chart(summary).mark_rule(strokeWidth=2).encode(x=alt.X("low:Q", scale=x_scale), x2="high:Q", y=y)
    dots = (
        alt.Chart(frame)
        .mark_circle(size=45, color="black")
        .encode(
            x=alt.X("test_acc:Q", scale=x_scale),
            y=y,
            tooltip=[
                "configuration:N",
                *(["owner:N"] if "owner" in frame else []),
                "seed:Q",
                alt.Tooltip("test_acc:Q", format=".1%"),
            ],  # fmt: skip
        )
    )
    return (bars + errors + dots).properties(height=alt.Step(34))


def confusion_heatmap(confusion: list[list[int]], classes: list[str]) -> alt.LayerChart:
    rows = [
        {"true": classes[i], "predicted": classes[j], "count": n}
        for i, row in enumerate(confusion)
        for j, n in enumerate(row)
    ]
    frame = pd.DataFrame(rows)
    base = alt.Chart(frame).encode(
        x=alt.X("predicted:N", sort=classes), y=alt.Y("true:N", sort=classes), tooltip=["true", "predicted", "count"]
    )
    heat = base.mark_rect().encode(color=alt.Color("count:Q", scale=alt.Scale(scheme="blues")))
    text = base.mark_text(fontSize=10).encode(text="count:Q")
    return (heat + text).properties(width=440, height=440)  # large enough to read from the back of a class


def per_class_bars(per_class: list[float], classes: list[str]) -> alt.Chart:
    frame = pd.DataFrame({"class": classes, "accuracy": per_class})
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("accuracy:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            # Every class named: Vega drops labels it thinks overlap, and dropped 5 of 10 here.
            y=alt.Y("class:N", sort=classes, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=200)),
            tooltip=["class", alt.Tooltip("accuracy:Q", format=".1%")],
        )
        .properties(height=alt.Step(26), width=300)
    )


def class_balance(counts: dict[str, int]) -> alt.Chart:
    frame = pd.DataFrame({"class": list(counts), "images": list(counts.values())})
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(x=alt.X("class:N", sort=list(counts), title=None), y="images:Q", tooltip=["class", "images"])
        .properties(height=220)
    )


def semi_frame(runs: list[RunRecord]) -> pd.DataFrame:
    """Long format of the semi-supervised diagnostics: one row per (run, round, metric)."""
    rows = []
    for r in runs:
        for d in r.diagnostics.get("rounds", []):
            for metric in ("accepted", "pseudo_acc", "test_acc"):
                if d.get(metric) is not None:
                    rows.append({"run": run_label(r), "round": d["round"], "metric": metric, "value": d[metric]})
    return pd.DataFrame(rows, columns=["run", "round", "metric", "value"])


def semi_diagnostics(frame: pd.DataFrame) -> alt.Chart:
    """Pseudo-labels accepted and their accuracy per round; frame columns: run, round, metric, value."""
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("round:Q", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("value:Q", title=None),
            color="run:N",
            tooltip=["run", "round", "metric", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(height=200, width=260)
        .facet(column=alt.Column("metric:N", title=None))
        .resolve_scale(y="independent")
    )


# ---- teaching views


def image_data_urls(images) -> list[str]:
    """uint8 images (N x 3 x 32 x 32) as PNG data URLs, enlarged 2x: a chart tooltip named "image"
    shows them (vega-tooltip)."""
    import base64
    import io

    from PIL import Image

    urls = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).resize((64, 64), Image.Resampling.NEAREST).save(buf, "PNG")
        urls.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
    return urls


def map_frame(coords, names: list[str], n_labeled: int, images: list[str]) -> pd.DataFrame:
    """One row per point of a feature map: position, what colours it, labeled or not, its picture."""
    return pd.DataFrame({
        "x": coords[:, 0], "y": coords[:, 1], "class": names,
        "point": ["labeled"] * n_labeled + ["other"] * (len(names) - n_labeled), "image": images,
    })  # fmt: skip


def feature_map_chart(frame: pd.DataFrame, title: str, classes: list[str], height: int = 420) -> alt.LayerChart:
    """The map: small dots for the sample, large outlined dots for the labeled images, by class; hover
    shows the image. "not reached" (label spreading) is grey."""
    # Grey: "not reached" (label spreading), "unlabeled" (a dataset whose unlabeled images have no hidden labels).
    grey = next((g for g in ("not reached", "unlabeled") if (frame["class"] == g).any()), None)
    domain = [*classes, grey] if grey else list(classes)
    scheme = alt.Scale(domain=domain, range=[*CLASS_COLORS[: len(classes)], "#d0d0d0"][: len(domain)])
    base = alt.Chart(frame).encode(
        x=alt.X("x:Q", axis=None), y=alt.Y("y:Q", axis=None),
        # Three columns: three maps side by side leave each too narrow for a 10-class legend on one row.
        color=alt.Color("class:N", scale=scheme, legend=alt.Legend(title=None, orient="bottom", columns=3,
                                                                   labelLimit=0, symbolLimit=0)),
        tooltip=["image", "class:N", "point:N"],
    )  # fmt: skip
    others = base.transform_filter(alt.datum.point == "other").mark_circle(size=14, opacity=0.7)
    labeled = base.transform_filter(alt.datum.point == "labeled").mark_point(
        size=130, filled=True, stroke="black", strokeWidth=1, shape="diamond"
    )
    # A title in lines of at most 40 characters: a narrow map would cut a long one off ("after 20 iter...").
    lines = textwrap.wrap(title, 40) or [""]
    return (others + labeled).properties(title=alt.TitleParams(lines, limit=0), height=height)


CLASS_COLORS = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6",
                "#9d755d", "#439894", "#bab0ac", "#1f77b4"]  # fmt: skip


def replay_accuracy_chart(frame: pd.DataFrame, current: int) -> alt.LayerChart:
    """Hidden-label accuracy of the spread labels and the share of points reached, per iteration."""
    long = frame.melt("iteration", ["accuracy", "reached"], var_name="measure", value_name="value")
    lines = alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("iteration:Q", title="spreading iterations"),
        y=alt.Y("value:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1]), title=None),
        color=alt.Color("measure:N", legend=alt.Legend(orient="bottom", title=None)),
        tooltip=["iteration:Q", "measure:N", alt.Tooltip("value:Q", format=".1%")],
    )  # fmt: skip
    rule = alt.Chart(pd.DataFrame({"iteration": [current]})).mark_rule(strokeDash=[4, 3]).encode(x="iteration:Q")
    return (lines + rule).properties(height=260)


def notebook_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """The notebook's summary plot: test accuracy per experiment, ours (mean +- std, a dot per seed)
    beside the notebook's reported number (a black tick). frame: experiment, seed, test_acc, reported."""
    summary = (
        frame.groupby("experiment", sort=False)
        .agg(mean=("test_acc", "mean"), std=("test_acc", "std"), reported=("reported", "first"))
        .reset_index()
    )
    summary["std"] = summary["std"].fillna(0.0)
    summary["low"], summary["high"] = summary["mean"] - summary["std"], summary["mean"] + summary["std"]
    order = list(summary["experiment"])
    y = alt.Y("experiment:N", sort=order, title=None, axis=alt.Axis(labelLimit=320))
    x = alt.X("mean:Q", title="test accuracy", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1]))
    bars = alt.Chart(summary).mark_bar(opacity=0.5, height={"band": 0.6}).encode(
        x=x, y=y, tooltip=["experiment:N", alt.Tooltip("mean:Q", format=".1%"), alt.Tooltip("std:Q", format=".1%")]
    )  # fmt: skip
    errors = alt.Chart(summary).mark_rule(strokeWidth=2).encode(x="low:Q", x2="high:Q", y=y)
    dots = alt.Chart(frame).mark_circle(size=40, color="black").encode(x="test_acc:Q", y=y)
    reported = alt.Chart(summary.dropna(subset=["reported"])).mark_tick(color="#e45756", thickness=3, size=26).encode(
        x="reported:Q", y=y, tooltip=[alt.Tooltip("reported:Q", format=".2%", title="the notebook reported")]
    )  # fmt: skip
    return (bars + errors + dots + reported).properties(height=alt.Step(40))


def spectrum_chart(variances: list[float]) -> alt.Chart:
    """The variance of each direction of 2x2 patch space, largest first, on a log scale."""
    frame = pd.DataFrame({"direction": range(1, len(variances) + 1), "variance": variances})
    # Points joined by a line rather than bars: a bar on a log scale has no zero to start from.
    return alt.Chart(frame).mark_line(point=alt.OverlayMarkDef(size=60)).encode(
        x=alt.X("direction:O", title="direction in patch space (the filters below, in order)"),
        y=alt.Y("variance:Q", scale=alt.Scale(type="log"), title="variance (log scale)"),
        tooltip=["direction:O", alt.Tooltip("variance:Q", format=".2e")],
    ).properties(height=220)  # fmt: skip
