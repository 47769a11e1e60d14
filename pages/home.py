"""Home: the small-data setting, the dataset in use, the device, and where to go next."""

from pathlib import Path

import streamlit as st

from core.data.cifar import download_cifar10
from core.data.load import dataset_from_env, default_data_dir
from core.data.splits import DataError
from core.views.charts import class_balance
from ui.common import device_label, framed, get_splits, plain, store
from ui.identity import me

framed("pages/home.py")

st.title("Small Data Lab")
st.markdown(
    "Deep learning when labels are scarce. Only the **first 100 images** of the CIFAR-10 training set "
    "carry labels; the other **49,900** are unlabeled, and the **10,000** test images measure the result. "
    "See what data augmentation, transfer from ImageNet and semi-supervised learning really buy "
    "in that setting, on a laptop CPU. The original practical session reached 19.4% from scratch and "
    "29.8% with an ImageNet ResNet-18 after 100 epochs."
)

source = dataset_from_env()
try:
    splits = get_splits(source)
except DataError as err:
    splits = None
    missing = source == "cifar10" or not Path(source).exists()
    # A dataset that is there but cannot be read is not "no data": say which, and what to fix.
    st.warning(f"**{'No data yet' if missing else 'The dataset cannot be read'}.** {plain(err)}")
    if source == "cifar10" and not me().teacher:
        st.info("Your teacher prepares the dataset on the server: ask them.")
    elif source == "cifar10":
        st.markdown(f"Download CIFAR-10 (163 MB) into `{plain(default_data_dir().resolve())}`:")
        if st.button("Download CIFAR-10", type="primary", icon=":material/download:"):
            bar = st.progress(0.0, text="Starting the download...")
            try:
                download_cifar10(default_data_dir(), progress=lambda f, msg: bar.progress(min(1.0, f), text=msg))
                st.success("CIFAR-10 is ready.")
                st.rerun()
            except DataError as download_err:
                st.error(str(download_err))
    if source == "cifar10":  # a folder dataset is the other way; one is in use already otherwise
        st.info(
            "**Or use a folder dataset**: set `SMALLDATA_DATASET` to a folder holding `labeled/<class>/`, "
            "`test/<class>/` and optionally `unlabeled/`, then restart, e.g.\n\n"
            "`SMALLDATA_DATASET=../shared/datasets/cifar10-offline streamlit run app.py`"
        )
    elif me().teacher:
        st.info("Fix the file or folder named above (or point `SMALLDATA_DATASET` at another folder), then reload.")

if splits is not None:
    info = splits.summary()
    cols = st.columns(4)
    cols[0].metric("Labeled", f"{info['labeled']:,}")
    cols[1].metric("Unlabeled", f"{info['unlabeled']:,}")
    cols[2].metric("Test", f"{info['test']:,}")
    cols[3].metric("Saved runs", len(store().runs()))
    st.caption(
        f"Source: `{plain(info['source'])}` · {len(info['classes'])} classes · "
        f"{info['image_size']}x{info['image_size']} px"
    )
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Class balance of the labeled images")
        st.altair_chart(class_balance(info["labeled_per_class"]), width="stretch")
    with right:
        st.subheader("Device")
        st.write(device_label())
        st.subheader("Where next")
        st.page_link("pages/data.py", label="Preview augmentations side by side", icon=":material/photo_library:")
        st.page_link("pages/images.py", label="Your images: upload, label a few, train on them",
                     icon=":material/add_photo_alternate:")  # fmt: skip
        st.page_link(
            "pages/train.py",
            label="Train a model (scratch, transfer, semi-supervised)",
            icon=":material/model_training:",
        )
        st.page_link("pages/compare.py", label="Compare saved runs", icon=":material/bar_chart:")
        st.page_link("pages/why.py", label="Why it works: feature maps, spreading, the stem", icon=":material/hub:")
        st.page_link("pages/notebook.py", label="The notebook, replayed question by question",
                     icon=":material/menu_book:")  # fmt: skip
        st.page_link("pages/try_model.py", label="Try a model on an image", icon=":material/image_search:")
        st.page_link("pages/board.py", label="The class board: recipes pooled over everyone's seeds",
                     icon=":material/leaderboard:")  # fmt: skip
