"""Teacher: the queue with its owners, Stop for any job, the per-student limits, the lesson, the members of the
class, removing a student and clearing the class. Core checks the teacher on every one of these calls."""

import pandas as pd
import streamlit as st

from core.access import PermissionDenied
from core.classroom.lesson import MAX_PINNED, Pinned, notebook_lesson, pinned, set_lesson
from core.classroom.teacher import clear_class, remove_student
from core.jobs.schedule import Limits
from core.methods.registry import list_methods, list_presets, preset, validate
from core.views.featuremap import pretrained_backbone
from ui.common import config_caption, framed, plain, registry, settings, store, try_splits
from ui.identity import me, roster
from ui.jobs_view import show_class_jobs

framed("pages/teacher.py")
st.title("Teacher")
you = me()
if not you.teacher:
    st.error("This page is the teacher's.")
    st.stop()
reg = registry()
splits = try_splits()
labeled = len(splits.labeled_y) if splits is not None else 100  # a lesson asks for no more labels than there are
if done := st.session_state.pop("teacher_flash", None):
    st.success(done)


def act(label: str, what, *args, **kwargs) -> None:
    """One teacher action; its outcome is shown after the rerun."""
    try:
        result = what(*args, **kwargs)
        st.session_state["teacher_flash"] = f"{label}: {result}" if result is not None else f"{label}: done."
    except (PermissionDenied, ValueError) as err:
        st.session_state["teacher_flash"] = f"{label}: refused, {err}"


st.subheader("The queue")
busy = len(reg.running())
st.metric("Workers busy", f"{busy} of {reg.max_running}")
show_class_jobs()
active = reg.queue.jobs(active_only=True, limit=1000)
places = reg.queue.positions()
stoppable = sorted(
    (j for j in active if j.state in ("queued", "running")),
    key=lambda j: (j.state != "running", places.get(j.job_id, 0)),
)  # running first, then the queue
if stoppable:
    c = st.columns([3, 1, 2])
    picked = c[0].selectbox("Job", [j.job_id for j in stoppable], key="t_job",
                            format_func=lambda i: next(f"job {i} · {j.owner} · {j.state} · {config_caption(j.cfg)}"
                                                       for j in stoppable if j.job_id == i))  # fmt: skip
    c[1].button("Stop it", key="t_stop", icon=":material/stop:", on_click=act,
                args=(f"Job {picked}", reg.stop, picked, you))  # fmt: skip

st.subheader("Limits per student")
limits = reg.queue.limits()
c = st.columns(3)
running = c[0].number_input("Jobs running at once", 1, 100, limits.running, key="t_running",
                            help="A student's next job waits while this many of theirs run.")  # fmt: skip
waiting = c[1].number_input("Jobs waiting", 1, 100, limits.queued, key="t_queued",
                            help="A student cannot queue more than this many at once.")  # fmt: skip
if c[2].button("Save the limits", key="t_limits"):
    act("Saving the limits", reg.queue.set_limits, Limits(int(running), int(waiting)), by=you)
    st.rerun()
st.caption(f"The server runs {settings().max_jobs} job(s) at once (SMALLDATA_MAX_JOBS); teachers have no limit.")

st.subheader("The lesson")
lesson = pinned(roster())
if lesson:
    for p in lesson:
        st.markdown(f"- **{p.label}**: {config_caption(p.cfg)}")
else:
    st.caption("No lesson pinned: the class board shows every recipe the class ran.")
c = st.columns(3)
if c[0].button("Pin the notebook's four", key="t_notebook", icon=":material/push_pin:"):
    backbone = pretrained_backbone()
    four = notebook_lesson(backbone.arch, backbone.weights, min(100, labeled))
    act("The notebook's four", set_lesson, roster(), four, by=you)
    st.rerun()
choices = [f"{m} · {p}" for m in list_methods() for p in list_presets(m)]
extra = c[1].multiselect("Or pin presets", choices, key="t_presets", max_selections=MAX_PINNED)


def preset_lesson(choices: list[str]) -> list[Pinned]:
    """The chosen presets; those that need pretrained weights get the offline backbone, if there is one."""
    backbone = pretrained_backbone()
    recipes = []
    for choice in choices:
        method, name = choice.split(" · ")
        cfg = preset(method, name)
        cfg = cfg.with_(n_labeled=min(cfg.n_labeled, labeled))
        if cfg.weights and backbone.weights != "imagenet":
            cfg = validate(cfg.with_(weights=backbone.weights, arch=backbone.arch))  # ConfigError: act says why
        recipes.append(Pinned(choice, cfg))
    return recipes


if c[1].button("Pin these", key="t_pin", disabled=not extra):
    act(f"{len(extra)} recipe(s)", lambda: set_lesson(roster(), preset_lesson(extra), by=you))
    st.rerun()
if c[2].button("Unpin the lesson", key="t_unpin", disabled=not lesson):
    act("The lesson", set_lesson, roster(), [], by=you)
    st.rerun()

st.subheader("The class")
members = roster().members()
runs = store().runs()
per_owner = pd.Series([r.owner for r in runs]).value_counts()
st.dataframe(pd.DataFrame([{"name": m["name"], "role": m["role"], "runs": int(per_owner.get(m["name"], 0))}
                           for m in members], columns=["name", "role", "runs"]), hide_index=True)  # fmt: skip
students = [m["name"] for m in members if m["role"] != "teacher"]
c = st.columns([3, 1])
who = c[0].selectbox("Student", students or ["(nobody yet)"], key="t_student")
if c[1].button("Remove with their runs", key="t_remove", disabled=not students, icon=":material/person_remove:"):
    act(f"Removing {who}", remove_student, who, reg.queue, reg.store, roster(), by=you)
    st.rerun()
with st.expander("Clear the class (at the end of a course)"):
    st.caption("Stops every student's job and signs every student out; names can then be taken again only if their "
               "runs are deleted too. Teachers' runs and the lesson stay.")  # fmt: skip
    delete_runs = st.checkbox("Also delete every student's runs", key="t_delete_runs")
    sure = st.checkbox("Yes, clear the class", key="t_sure")
    if st.button("Clear the class", disabled=not sure, key="t_clear", icon=":material/delete_sweep:"):
        act("Clearing the class", clear_class, reg.queue, reg.store, roster(), by=you, delete_runs=delete_runs)
        st.rerun()

with st.expander("The server's settings"):
    st.dataframe([r | {"value": plain(r["value"])} for r in settings().rows()], hide_index=True)
