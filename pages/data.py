"""Data and augmentations: a gallery of the labeled images and two pipelines side by side."""

import streamlit as st

from core.data.augment import preview_fits, preview_grid, to_code
from core.data.pipelines import CATALOG, PRESETS, parse_pipeline
from ui.common import framed, pixelated_images, try_splits

framed("pages/data.py")

st.title("Data and augmentations")
splits = try_splits()
if splits is None:
    st.stop()

classes = list(splits.classes)
labels = splits.labeled_y.tolist()

st.subheader("The labeled images")
shown = st.multiselect("Classes", classes, default=classes, key="gallery_classes")
indices = [i for i, y in enumerate(labels) if classes[y] in shown]
pixelated_images()
tiles = [splits.labeled_x[i].permute(1, 2, 0).numpy() for i in indices]  # one flowing list: compact
st.image(tiles, caption=[f"{i}: {classes[labels[i]]}" for i in indices], width=72)


def select_pipeline(side: str, default: str) -> str:
    """A preset, or a custom pipeline typed as text; returns the pipeline text."""
    choice = st.selectbox(
        f"Pipeline {side}", [*PRESETS, "custom"], index=list(PRESETS).index(default), key=f"pipe_{side}"
    )
    if choice != "custom":
        st.caption(f"`{PRESETS[choice] or 'no augmentation'}`")
        return choice
    text = st.text_input(
        f"Custom pipeline {side}",
        value="hflip|crop(padding=4)|rotate(degrees=15)",
        key=f"custom_{side}",
        help="Steps separated by |, each name or name(key=value, ...). Steps: " + ", ".join(CATALOG),
    )
    return text


st.subheader("Preview two pipelines")
left, right, controls = st.columns([2, 2, 2])
with left:
    text_a = select_pipeline("A", "flip_crop")
with right:
    text_b = select_pipeline("B", "flip_crop_randaugment")
with controls:
    k = st.slider("Samples per pipeline", 1, 12, 6, key="k")
    if "seed" not in st.session_state:
        st.session_state.seed = 0
    st.number_input("Seed", 0, 10**6, key="seed")

    def next_seed() -> None:  # a callback runs before the widgets: it may change the Seed widget's value
        st.session_state.seed = (st.session_state.seed + 1) % (10**6 + 1)

    st.button("Resample", icon=":material/refresh:", on_click=next_seed, key="resample")

default_pick = indices[:6]
# Keyed by the classes shown: a kept key would hold images of classes now filtered out, and show none.
picked = st.multiselect(
    "Images", indices, default=default_pick, format_func=lambda i: f"#{i} {classes[labels[i]]}",
    key="picked" if len(shown) == len(classes) else f"picked_{'_'.join(sorted(shown))}",
)  # fmt: skip
errors = []
for side, text in (("A", text_a), ("B", text_b)):
    try:
        parse_pipeline(text)
    except ValueError as err:
        errors.append(f"Pipeline {side}: {err}")
if errors:
    for e in errors:
        st.error(e)
elif picked:
    seed = int(st.session_state.seed)
    if preview_fits(k, 2):
        grid = preview_grid(splits.labeled_x[picked], [text_a, text_b], k, seed=seed)
        st.caption(f"Each row: original | {k} samples of A | {k} samples of B")
        st.image(grid.numpy(), width=grid.shape[1])
    else:  # side by side, the tiles would be too small for a projector: one pipeline after the other
        for side, text in (("A", text_a), ("B", text_b)):
            grid = preview_grid(splits.labeled_x[picked], [text], k, seed=seed)
            st.caption(f"Pipeline {side}, each row: original | {k} samples")
            st.image(grid.numpy(), width=grid.shape[1])
    code_a, code_b = st.columns(2)
    for col, side, text in ((code_a, "A", text_a), (code_b, "B", text_b)):
        with col:
            st.markdown(f"**Pipeline {side} in torchvision**")
            st.code(to_code(text, num_classes=len(classes)), language="python")
            for name, _ in parse_pipeline(text):
                if CATALOG[name].note:
                    st.caption(f"**{CATALOG[name].label}.** {CATALOG[name].note}")
else:
    st.info("Pick at least one image.")

with st.expander("Why augmentation matters with 100 labels"):
    st.markdown(
        "- Each image is seen hundreds of times: without augmentation the network memorises the 100 "
        "images within a few epochs (train accuracy 100%) and learns little that transfers.\n"
        "- At 32x32 every pixel counts: a rotation of 45° or a crop of 16 pixels destroys more "
        "information than it adds. Keep geometric changes small.\n"
        "- Policies such as AutoAugment were searched on the full CIFAR-10; RandAugment and "
        "TrivialAugment replace the search by one or two knobs.\n"
        "- MixUp and CutMix mix images *and* labels in a batch: the model is asked for calibrated "
        "in-between answers, a strong regulariser."
    )
