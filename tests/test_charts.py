from core.views.charts import (
    accuracy_bars,
    accuracy_frame,
    accuracy_summary,
    class_balance,
    confusion_heatmap,
    history_frame,
    learning_curves,
    per_class_bars,
    semi_diagnostics,
    semi_frame,
)
from tests.test_store import record


def runs():
    a, b, c = record("a", 0.2, seed=0), record("b", 0.4, seed=1), record("c", 0.9, seed=0)
    c.config = c.config.with_(method="transfer", arch="mobilenet_v2", weights="imagenet")
    c.diagnostics = {"rounds": [{"round": 0, "accepted": 0, "pseudo_acc": None, "test_acc": 0.5},
                            {"round": 1, "accepted": 40, "pseudo_acc": 0.8, "test_acc": 0.6}]}  # fmt: skip
    return [a, b, c]


def test_accuracy_mean_and_spread_over_seeds():
    summary = accuracy_summary(accuracy_frame(runs())).set_index("runs")
    two = summary.loc[2]
    assert abs(two["mean"] - 0.3) < 1e-9 and abs(two["std"] - 0.1414) < 1e-3
    assert summary.loc[1]["std"] == 0.0
    spec = accuracy_bars(accuracy_frame(runs())).to_dict()
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["bar", "rule", "circle"]


def test_learning_curves_have_hover_highlight_and_tooltips():
    frame = history_frame(runs())
    assert set(frame["metric"]) == {"train_loss", "train_acc"} and len(frame) == 6
    spec = learning_curves(frame).to_dict()
    assert spec["params"][0]["select"]["on"] == "pointerover" and spec["params"][0]["select"]["fields"] == ["run"]
    assert "tooltip" in spec["spec"]["encoding"]


def test_small_charts():
    spec = confusion_heatmap([[3, 1], [0, 4]], ["x", "y"]).to_dict()
    values = spec["datasets"][next(iter(spec["datasets"]))]
    assert sum(v["count"] for v in values) == 8
    assert per_class_bars([0.5, 1.0], ["x", "y"]).to_dict()["mark"]["type"] == "bar"
    assert class_balance({"x": 2, "y": 5}).to_dict()["encoding"]["y"]["field"] == "images"
    frame = semi_frame(runs())
    assert set(frame["metric"]) == {"accepted", "pseudo_acc", "test_acc"} and len(frame) == 5
    assert "facet" in semi_diagnostics(frame).to_dict()


def test_runs_of_different_recipes_never_pool_under_one_label():
    a, b = record("a", 0.2, seed=0), record("b", 0.8, seed=0)
    b.config = b.config.with_(lr=b.config.lr / 10)  # the label shows no learning rate
    frame = accuracy_frame([a, b])
    assert frame["configuration"].nunique() == 2 and len(accuracy_summary(frame)) == 2


def test_a_feature_maps_long_title_wraps_and_its_legend_keeps_every_class():
    import numpy as np

    from core.views.charts import feature_map_chart, map_frame

    classes = [f"class {i}" for i in range(10)]
    frame = map_frame(np.zeros((20, 2)), [classes[i % 10] for i in range(20)], 10, [""] * 20)
    spec = feature_map_chart(frame, "after 20 iterations (mobilenet_v2, ImageNet (mobilenet_v2_imagenet.pth))",
                             classes).to_dict()  # fmt: skip
    lines = spec["title"]["text"]
    assert len(lines) >= 2 and all(len(line) <= 40 for line in lines) and " ".join(lines).startswith("after 20")
    legend = spec["layer"][0]["encoding"]["color"]["legend"]
    assert legend["columns"] == 3 and legend["labelLimit"] == 0
    assert spec["layer"][0]["encoding"]["color"]["scale"]["domain"] == classes
