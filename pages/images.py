"""Your images: bring a small dataset in from the browser, label a few images, and train on it like any other."""

import streamlit as st

from core.data.folder import IMAGE_SUFFIXES
from core.datasets.images import RESOLUTIONS
from ui import labelling
from ui.common import framed, pixelated_images
from ui.datasets import chosen, library, usable, use
from ui.identity import class_mode, me

framed("pages/images.py")

st.title("Your images")
st.markdown(
    "Photos the class took, or 50 images of your own problem: upload them, label a few here, and every method "
    "trains on them. Without a test set, each run is scored by **5-fold cross-validation** over the labeled "
    "images, and says so."
)
labelling.show_outcome()
you = me()

with st.expander("Bring images in", expanded=chosen() is None):
    st.caption(
        "A **zip of class folders** (`cat/…`, `dog/…`, optionally `unlabeled/` and `test/<class>/`), or a **flat "
        "set of images** (a zip or the files themselves) to label here. Any photo works: it is turned upright, "
        "cropped to a square and resized once."
    )
    files = st.file_uploader(
        "Zip or images", type=["zip", *(s.lstrip(".") for s in sorted(IMAGE_SUFFIXES))], accept_multiple_files=True,
        key="upload_files",
    )  # fmt: skip
    c1, c2 = st.columns([2, 1])
    first = files[0].name.rsplit(".", 1)[0] if files else ""
    name = c1.text_input("Name", value=first or "My images", key=f"upload_name_{first}")
    resolution = c2.radio(
        "Resolution (px)",
        RESOLUTIONS,
        index=1,
        horizontal=True,
        key="upload_resolution",
        help="32: CIFAR's size. 64 or 96: a pretrained backbone sees more, and takes longer.",
    )
    if st.button("Make a dataset", type="primary", disabled=not files, icon=":material/upload:", key="make_dataset"):
        labelling.make_dataset(files, name, int(resolution))
        st.rerun()

info = chosen()
if info is None:
    st.info("Choose one of your datasets in the sidebar, or bring images in above.")
else:
    may_label = you.may_change(info.owner)
    st.subheader(f"Label: {info.name}")
    counts = st.columns(max(1, min(len(info.classes), 5)))
    for i, cls in enumerate(info.classes):
        n, t = info.labeled[cls], info.test.get(cls, 0)
        counts[i % len(counts)].progress(min(1.0, n / labelling.TARGET),
                                         text=f"**{cls}**: {n} labeled" + (f", {t} test" if t else ""))  # fmt: skip
    st.caption(f"{info.unlabeled} unlabeled images left: they stay unlabeled and feed the semi-supervised methods. "
               f"Aim for {labelling.TARGET} per class; cross-validation needs 2.")  # fmt: skip
    if not may_label:
        st.caption(f"This dataset is {info.owner}'s: only they (or a teacher) label it.")
    else:
        a1, a2 = st.columns([3, 2])
        a1.text_input("New class", key="new_class", placeholder="e.g. cat")
        a1.button("Add the class", on_click=labelling.add_class, args=(info.slug,), key="add_class")
        split = a2.radio("Label into", ["labeled", "test"], horizontal=True, key="label_split",
                         format_func={"labeled": "training images", "test": "the test set"}.get)  # fmt: skip
        a2.button("Undo", icon=":material/undo:", shortcut="U", on_click=labelling.undo, args=(info.slug,),
                  key="undo")  # fmt: skip
        pending = library().images(info.slug, you)  # (where, file) of each unlabeled image
        if not info.classes:
            st.info("Add a class first: type its name above.")
        elif not pending:
            st.success("Every image is labelled. Train on it: the Train page uses the dataset chosen in the sidebar.")
        else:
            pixelated_images()
            left, right = st.columns([1, 3])
            with left:
                st.markdown("**Next image**")
                st.image(str(pending[0][1]), width=160)
                for i, cls in enumerate(info.classes):
                    key = str(i + 1) if i < 9 else None
                    st.button(cls, key=f"next_{i}", shortcut=key,  # the button shows its key
                              on_click=labelling.label, args=(info.slug, pending[0][0], cls, split),
                              width="stretch")  # fmt: skip
                st.caption("Keys 1-9 label it, U undoes.")
            with right:
                current = st.segmented_control("A click on an image labels it as", info.classes, key="grid_class",
                                               default=info.classes[0])  # fmt: skip
                grid = pending[1:25]
                cols = st.columns(6)
                for n, (where, file) in enumerate(grid):
                    with cols[n % 6]:
                        st.image(str(file), width=96)
                        st.button(f"→ {current}", key=f"tile_{where}", disabled=current is None,
                                  on_click=labelling.label, args=(info.slug, where, current, split))  # fmt: skip

st.subheader("Your datasets" if class_mode() and not you.teacher else "Datasets")
datasets = usable()
if not datasets:
    st.caption("None yet.")
for d in datasets:
    with st.expander(f"{d.name} · {d.owner}" + (" · shared with the class" if d.shared else "")):
        st.write(
            f"{len(d.classes)} classes ({', '.join(d.classes) or 'none yet'}) · {d.n_labeled} labeled · "
            f"{d.unlabeled} unlabeled · {d.n_test} test · {d.resolution} px · scored by "
            f"{'its test set' if d.n_test else 'cross-validation'}"
        )
        for warning in d.warnings:
            st.warning(warning)
        if d.skipped:
            st.caption(f"{len(d.skipped)} file(s) skipped at upload: " +
                       "; ".join(f"{n} ({why})" for n, why in d.skipped[:10]))  # fmt: skip
        b1, b2, b3, b4 = st.columns(4)
        b1.button("Use it", key=f"use_{d.slug}", on_click=use, args=(d.slug,), disabled=info is not None and
                  info.slug == d.slug)  # fmt: skip
        b2.download_button("Export (zip)", lambda s=d.slug: library().export_zip(s, you), f"{d.slug}.zip",
                           "application/zip", key=f"export_{d.slug}", icon=":material/download:")  # fmt: skip
        if you.teacher and class_mode():
            b3.toggle("Share with the class", value=d.shared, key=f"share_{d.slug}", on_change=labelling.share,
                      args=(d.slug,))  # fmt: skip
        if you.may_change(d.owner):
            sure = b4.checkbox("Yes, delete it", key=f"sure_{d.slug}")
            b4.button("Delete", key=f"delete_{d.slug}", disabled=not sure, on_click=labelling.delete, args=(d.slug,),
                      icon=":material/delete:")  # fmt: skip
