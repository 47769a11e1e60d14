"""Your images through AppTest: the sidebar's dataset, labelling on the page (buttons and undo), who may see and
label a dataset in class mode, and every page on a dataset without a test set."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.access import SINGLE_USER, Actor
from core.datasets.library import DatasetLibrary
from core.datasets.upload import read_zip
from tests.test_app import APP, app_env, local_backbone  # noqa: F401  (fixtures)
from tests.test_datasets import COLOURS, class_folders, make_zip, photo


@pytest.fixture
def images_env(app_env, monkeypatch):  # noqa: F811  (the fixture imported above)
    monkeypatch.setenv("SMALLDATA_DATASETS_DIR", str(app_env / "datasets"))
    return DatasetLibrary(app_env / "datasets")


def on(at: AppTest, page: str, slug: str) -> AppTest:
    at.switch_page(page)
    at.session_state["dataset_choice"] = slug  # what the sidebar's picker sets
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_flat_upload_is_labelled_on_the_page_with_undo(images_env):
    flat = {f"IMG_{j}.jpg": photo(list(COLOURS.values())[j % 3], (80, 60), "RGB", "JPEG", j) for j in range(9)}
    info = images_env.create(read_zip(make_zip(flat), 32), "Flat", SINGLE_USER)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    on(at, "pages/images.py", info.slug)
    assert any("Add a class first" in i.value for i in at.info)
    for name in ("red", "green"):
        at.text_input(key="new_class").set_value(name)
        at.button(key="add_class").click().run()
    assert images_env.get(info.slug, SINGLE_USER).classes == ("green", "red")
    assert at.button(key="next_1").label == "red"  # key 2 labels the next image red
    at.button(key="next_1").click().run()  # the next image is red
    tiles = [b for b in at.button if b.key and b.key.startswith("tile_")]
    assert tiles and tiles[0].label == "→ red"  # a click labels as the class chosen above the grid
    tiles[0].click().run()
    assert images_env.get(info.slug, SINGLE_USER).labeled == {"green": 0, "red": 2}
    at.button(key="undo").click().run()
    assert images_env.get(info.slug, SINGLE_USER).labeled == {"green": 0, "red": 1}
    assert any("Took the last label back" in i.value for i in at.info)
    at.radio(key="label_split").set_value("test").run()
    at.button(key="next_0").click().run()
    assert images_env.get(info.slug, SINGLE_USER).test == {"green": 1, "red": 0}


def test_every_page_works_on_a_dataset_scored_by_cross_validation(images_env, local_backbone):  # noqa: F811
    from core.data.load import load_splits
    from core.methods.registry import preset
    from core.runs.store import RunStore
    from core.runs.train import execute
    from core.settings import current
    from tests.conftest import TINY

    info = images_env.create(read_zip(class_folders(per_class=4, unlabeled=6), 32), "Colours", SINGLE_USER)
    splits = load_splits(info.folder, cache_dir=current().cache_dir)
    cfg = preset("transfer", "recommended", arch=TINY, weights=local_backbone, resolution=32, device="cpu", epochs=20)
    record = execute(cfg, splits, RunStore(current().runs_dir), cache_dir=current().cache_dir)
    assert record.metrics.cross_validated
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    on(at, "pages/train.py", info.slug)
    folds = next(w for w in at.number_input if w.key.startswith("cv_folds"))
    assert (folds.value, folds.min, folds.max) == (5, 2, 20)
    assert any("no test set" in c.value for c in at.caption)
    on(at, "pages/compare.py", info.slug)
    table = next(d.value for d in at.dataframe if "Scored by" in d.value.columns)
    assert list(table["Scored by"]) == ["5-fold cross-validation"] and "over folds" in table["Test accuracy"][0]
    assert any("k-fold cross-validation" in i.value for i in at.info)
    at.multiselect(key="f_dataset").set_value(["Colours"]).run()
    assert not at.exception
    on(at, "pages/try_model.py", info.slug)
    assert at.radio(key="try_source").options[0] == "A labeled image"
    on(at, "pages/notebook.py", info.slug)
    assert any("This page is about **CIFAR-10**" in w.value for w in at.warning)
    for page in ("pages/home.py", "pages/data.py", "pages/why.py", "pages/board.py"):
        on(at, page, info.slug)


def test_in_class_mode_a_dataset_is_its_uploaders_until_the_teacher_shares_it(images_env, monkeypatch):
    from core.access import PermissionDenied
    from core.jobs.supervisor import uploaded_dataset

    ana, ben, teacher = Actor("Ana"), Actor("Ben"), Actor("Ms Lee", teacher=True)
    info = images_env.create(read_zip(class_folders(per_class=2, unlabeled=0), 32), "Ana's", ana)
    with pytest.raises(PermissionDenied, match="belongs to Ana"):
        uploaded_dataset(str(info.folder), ben)  # the queue refuses a run on it
    uploaded_dataset(str(info.folder), ana)
    with pytest.raises(PermissionDenied):
        images_env.label(info.slug, "unlabeled/x.png", "red", ben)
    images_env.share(info.slug, True, teacher)
    uploaded_dataset(str(info.folder), ben)  # shared: Ben trains on it...
    with pytest.raises(PermissionDenied):
        images_env.delete(info.slug, ben)  # ...and it stays Ana's


def test_uploads_through_the_page_make_a_dataset_or_say_why_not(images_env):
    from tests.test_datasets import traversal

    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/images.py").run()
    uploader = at.get("file_uploader")[0]
    uploader.set_value(("photos.zip", traversal("../../etc/evil.png"), "application/zip")).run()
    at.button(key="make_dataset").click().run()
    assert any("Nothing was imported" in e.value and "leaves it" in e.value for e in at.error)
    assert images_env.list(SINGLE_USER) == [] and not list(images_env.root.glob("*"))  # nothing left behind
    files = [(f"p{j}.png", photo((200, 30, 30), (40, 30), "RGBA", "PNG", j), "image/png") for j in range(4)]
    at.get("file_uploader")[0].set_value(files).run()
    at.button(key="make_dataset").click().run()
    assert not at.exception, at.exception
    assert any("is ready: 0 labeled, 4 unlabeled" in s.value for s in at.success)
    (info,) = images_env.list(SINGLE_USER)
    assert at.session_state["dataset_choice"] == info.slug and info.resolution == 64  # the page's default
    assert any(s.value == f"Label: {info.name}" for s in at.subheader)
