"""Every page through streamlit.testing.v1.AppTest on the synthetic dataset."""

import pytest
from streamlit.testing.v1 import AppTest

APP = str(__import__("pathlib").Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture
def app_env(monkeypatch, dataset_dir, tmp_path):
    monkeypatch.setenv("SMALLDATA_DATASET", str(dataset_dir))
    monkeypatch.setenv("SMALLDATA_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SMALLDATA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parent.parent)
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    return tmp_path


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if page != "pages/home.py":
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


def test_home_shows_dataset_and_next_steps(app_env):
    at = open_page("pages/home.py")
    labels = {m.label: m.value for m in at.metric}
    assert labels["Labeled"] == "30" and labels["Test"] == "30" and labels["Unlabeled"] == "60"
    assert labels["Saved runs"] == "0"
    assert any("SMALLDATA_DATASET" in m.value for m in at.sidebar.markdown)


def test_home_explains_missing_data(app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("SMALLDATA_DATASET", str(tmp_path / "nothing-here"))
    at = open_page("pages/home.py")
    assert any("does not exist" in w.value for w in at.warning)
    assert any("SMALLDATA_DATASET" in i.value for i in at.info)


def test_data_page_previews_two_pipelines(app_env):
    at = open_page("pages/data.py")
    assert at.selectbox(key="pipe_A").value == "flip_crop"
    assert len(at.multiselect(key="picked").value) == 6
    assert any("v2.RandomCrop" in c.value for c in at.code)
    at.selectbox(key="pipe_B").select("custom").run()
    at.text_input(key="custom_B").input("hflip|warp").run()
    assert any("warp" in e.value for e in at.error)


def test_train_page_validates_and_starts_a_run_that_compare_lists(app_env):
    at = open_page("pages/train.py")
    assert at.radio(key="method").value == "scratch"
    at.number_input(key="lr_scratch_notebook").set_value(0.0).run()
    assert any("lr" in e.value for e in at.error)
    assert at.button(key="start").disabled
    at.number_input(key="lr_scratch_notebook").set_value(0.001)
    at.number_input(key="ep_scratch_notebook").set_value(1)
    at.number_input(key="nl_scratch_notebook").set_value(30).run()
    assert not at.button(key="start").disabled
    at.button(key="start").click().run()
    assert not at.exception, at.exception
    from pages.common import registry

    assert registry().wait(timeout=120)
    job = registry().jobs()[-1]
    assert job.state == "finished", job.message
    at = open_page("pages/compare.py")
    assert job.run_id in at.multiselect(key="chosen").value
    assert any("Test accuracy per configuration" in s.value for s in at.subheader)


def test_compare_page_without_runs(app_env):
    at = open_page("pages/compare.py")
    assert any("No saved runs" in i.value for i in at.info)


def test_train_page_transfer_and_semi_forms_render(app_env):
    at = open_page("pages/train.py")
    at.radio(key="method").set_value("transfer").run()
    assert not at.exception
    assert at.selectbox(key="ft_transfer_notebook").value == "all"
    at.radio(key="method").set_value("semi").run()
    assert not at.exception
    assert at.selectbox(key="semi_semi_notebook").value == "selftrain"


def test_eight_sessions_each_start_a_run_and_all_are_saved(app_env):
    """Eight app sessions (AppTest instances) share the process-wide job registry: one trains at a
    time, the others wait in the queue with their positions, and all eight runs are saved."""
    from pages.common import registry, store

    sessions = []
    for seed in range(8):
        at = open_page("pages/train.py")
        at.number_input(key="ep_scratch_notebook").set_value(1)
        at.number_input(key="lr_scratch_notebook").set_value(0.001)
        at.number_input(key="seed_scratch_notebook").set_value(seed).run()
        at.button(key="start").click().run()
        assert not at.exception, at.exception
        sessions.append(at)
    jobs = registry().jobs()
    assert len(jobs) == 8 and sum(j.state == "running" for j in jobs) <= 1
    assert registry().wait(timeout=240)
    assert sorted(j.state for j in jobs) == ["finished"] * 8
    assert len(store().runs()) == 8
    sessions[0].run()  # a session re-renders with the finished jobs listed
    assert not sessions[0].exception
