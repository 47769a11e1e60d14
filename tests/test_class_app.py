"""Class mode through AppTest: thirty students of one class, each in their own session, start a run each."""

import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import TINY
from tests.test_app import APP

ROOT = Path(__file__).resolve().parent.parent
STUDENTS = 30


@pytest.fixture
def class_env(monkeypatch, dataset_dir, tmp_path, app_cache):
    monkeypatch.setenv("SMALLDATA_DATASET", str(dataset_dir))
    monkeypatch.setenv("SMALLDATA_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SMALLDATA_CACHE_DIR", str(app_cache))
    monkeypatch.setenv("SMALLDATA_CLASS_CODE", "owl-42")
    monkeypatch.setenv("SMALLDATA_TEACHER_CODE", "t-secret")
    monkeypatch.chdir(ROOT)
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    return [str(dataset_dir), str(tmp_path), str(app_cache), str(ROOT)]


def every_text(at: AppTest) -> str:
    """What a person reads on the page: text elements, tables, JSON, code, widget labels and options."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "text", "info", "warning", "error",
                 "success", "code", "json", "metric", "exception"):  # fmt: skip
        for element in getattr(at, kind):
            parts.append(str(getattr(element, "value", "")) + " " + str(getattr(element, "label", "")))
    for table in at.dataframe:
        parts.append(table.value.to_csv())
    for kind in ("selectbox", "multiselect", "radio"):
        for widget in getattr(at, kind):
            parts.append(" ".join(map(str, widget.options)) + " " + str(widget.label))
    return "\n".join(parts)


def sign_in(code: str, name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert any("class code" in m.value for m in at.markdown), "the sign-in form comes first"
    at.text_input(key="class_code").input(code)
    at.text_input(key="display_name").input(name)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def start_quick_run(at: AppTest) -> None:
    at.switch_page("pages/train.py")
    at.run()
    at.selectbox(key="preset_scratch").select("notebook").run()
    at.selectbox(key="arch_scratch_notebook").select(TINY)
    at.number_input(key="epochs_scratch_notebook").set_value(1)
    at.number_input(key="lr_scratch_notebook").set_value(0.001).run()
    at.button(key="start").click().run()
    assert not at.exception, at.exception


def test_a_wrong_code_or_a_taken_name_is_refused_with_a_message(class_env):
    at = sign_in("owl-43", "Ana")
    assert any("not this class's code" in e.value for e in at.error)
    sign_in("owl-42", "Ana")
    again = sign_in("owl-42", "ANA")
    assert any("taken in this class" in e.value for e in again.error)


@pytest.mark.slow  # thirty runs through a worker
def test_thirty_students_each_start_a_run_see_their_place_and_only_their_own(class_env):
    from core.access import Actor
    from core.config import TrainConfig
    from ui.common import registry, store

    # The teacher's demo run holds the one worker slot, so that all thirty are queued while they look.
    demo = TrainConfig(arch=TINY, epochs=10_000, batch_size=10, lr=1e-3, eval_every=0, device="cpu", n_labeled=30)
    teacher = Actor("Ms Lee", teacher=True)
    demo_job = registry().submit(demo, by=teacher).job_id
    deadline = time.time() + 60
    while registry().get(demo_job).state != "running" and time.time() < deadline:
        time.sleep(0.2)
    sessions = [sign_in("owl-42", f"Student {i:02d}") for i in range(STUDENTS)]
    for at in sessions:
        start_quick_run(at)
    jobs = [j for j in registry().queue.jobs(limit=1000) if j.kind == "train" and j.job_id != demo_job]
    assert len(jobs) == STUDENTS and {j.owner for j in jobs} == {f"Student {i:02d}" for i in range(STUDENTS)}
    by_owner = {j.owner: j for j in jobs}
    shown = []
    for i, at in enumerate(sessions):
        at.run()  # the page as it is now, with the class's jobs
        mine = by_owner[f"Student {i:02d}"]
        text = every_text(at)
        leaks = [p for p in class_env if p in text]
        assert not leaks, f"session {i} shows server paths {leaks}"
        stops = [b.key for b in at.button if b.key and b.key.startswith("stop_")]
        theirs = {f"stop_{j.job_id}" for j in registry().queue.jobs(limit=1000, owner=mine.owner)}  # a timing job too
        assert set(stops) <= theirs, (i, stops)  # never another's Stop
        place = registry().queue.positions()[mine.job_id]  # stable: the demo holds the worker
        assert re.search(rf"place {place} of \d+ in the queue, about", text), (i, place)
        shown.append(place)
    assert sorted(shown)[-1] >= STUDENTS and len(set(shown)) == STUDENTS  # each their own place
    registry().stop(demo_job, teacher)
    assert registry().wait(timeout=300)
    saved = [r for r in store().runs() if r.owner != teacher.name]  # the demo is saved too, stopped
    assert sorted(r.owner for r in saved) == sorted(by_owner) and {r.status for r in saved} == {"finished"}
    board = sessions[0]
    board.switch_page("pages/board.py")
    board.run()
    assert not board.exception, board.exception
    table = board.dataframe[0].value
    assert table["students"].iloc[0] == STUDENTS and table["runs"].iloc[0] == STUDENTS
    assert 0 <= table["std"].iloc[0] < 1
    compare = sessions[1]
    compare.switch_page("pages/compare.py")
    compare.run()
    assert compare.multiselect(key="doomed").options == [r.run_id for r in saved if r.owner == "Student 01"]
    assert not any(p in every_text(compare) for p in class_env)


def test_the_teacher_page_is_the_teachers_and_sets_the_limits(class_env):
    student = sign_in("owl-42", "Ana")
    assert "Teacher" not in every_text(student)
    teacher = sign_in("t-secret", "Ms Lee")
    teacher.switch_page("pages/teacher.py")
    teacher.run()
    assert not teacher.exception, teacher.exception
    teacher.number_input(key="t_queued").set_value(2)
    teacher.button(key="t_limits").click().run()
    assert any("Saving the limits: done" in s.value for s in teacher.success)
    from ui.common import registry

    assert registry().queue.limits().queued == 2
    teacher.button(key="t_notebook").click().run()
    assert not teacher.exception, teacher.exception
    from core.classroom.lesson import pinned
    from ui.identity import roster

    assert [p.cfg.n_labeled for p in pinned(roster())] == [30] * 4  # the synthetic set has 30 labeled images
    assert not any(p in every_text(teacher) for p in class_env)


@pytest.mark.slow  # the clicks queue jobs, which start a worker
def test_a_pinned_lesson_gives_each_student_a_button_and_a_seed_of_their_own(class_env):
    from ui.common import registry

    teacher = sign_in("t-secret", "Ms Lee")
    teacher.switch_page("pages/teacher.py")
    teacher.run()
    teacher.multiselect(key="t_presets").select("scratch · notebook").run()
    teacher.button(key="t_pin").click().run()
    assert any("1 recipe(s): done" in s.value for s in teacher.success), [s.value for s in teacher.success]
    seeds = []
    for name in ("Ana", "Ben"):
        student = sign_in("owl-42", name)
        student.switch_page("pages/board.py")
        student.run()
        assert any("Today's lesson" in h.value for h in student.subheader)
        student.button(key="lesson_0").click().run()
        assert not student.exception, student.exception
        job = next(j for j in registry().queue.jobs(owner=name) if j.kind == "train")
        seeds.append(job.cfg.seed)
    assert seeds == [0, 1]  # one recipe, two students, two seeds
