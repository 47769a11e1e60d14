"""Class mode in core: owners on jobs and runs, permissions in the queue and the store, the fair queue and its
limits, the roster, the lesson's seeds, the class board, and the CLI's --owner."""

import json
import sqlite3

import pytest

from core.access import LOCAL, SINGLE_USER, Actor, PermissionDenied, redact
from core.classroom.lesson import notebook_lesson, pinned, set_lesson, take_seed
from core.classroom.roster import ClassError, Roster
from core.classroom.teacher import clear_class, remove_student
from core.cli import main
from core.config import TrainConfig
from core.jobs.queue import JobQueue
from core.jobs.schedule import Limits, expected_wait
from core.jobs.worker import work
from core.runs.record import RunRecord
from core.runs.store import RunStore
from core.runs.train import execute
from core.settings import read
from core.views.board import board, board_export, pooled_runs
from tests.conftest import TINY

QUICK = dict(arch=TINY, epochs=1, batch_size=10, lr=1e-3, eval_every=0, device="cpu", n_labeled=30)
ANA, BEN, TEACHER = Actor("Ana"), Actor("Ben"), Actor("Ms Lee", teacher=True)
CLASS = read({"SMALLDATA_CLASS_CODE": "owl-42", "SMALLDATA_TEACHER_CODE": "t-secret"})


def cfg(seed: int = 0, **kw) -> TrainConfig:
    return TrainConfig(**QUICK | kw, seed=seed)


def test_a_student_cannot_stop_another_students_job_and_a_teacher_can(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite")
    anas = q.submit(cfg(), "data", by=ANA)
    with pytest.raises(PermissionDenied, match="belongs to Ana: only Ana or a teacher can stop it"):
        q.request_stop(anas, by=BEN)
    assert q.get(anas).state == "queued"
    assert q.request_stop(anas, by=TEACHER) == "stopped"
    assert q.get(anas).message == "removed from the queue by Ms Lee (teacher)"
    running = q.submit(cfg(1), "data", by=ANA)
    q.claim(running)
    assert q.request_stop(running, by=ANA) == "stopping" and q.get(running).stop_by is None  # her own


def test_runs_can_be_deleted_evaluated_and_exported_only_by_their_owner_or_a_teacher(splits, tmp_path):
    store = RunStore(tmp_path / "runs")
    anas = execute(cfg(keep_weights=True, eval_every=1, eval_subset=10), splits, store, owner="Ana")
    assert store.load(anas.run_id).owner == "Ana"
    for call in (lambda: store.delete(anas.run_id, by=BEN), lambda: store.export_json([anas.run_id], by=BEN),
                 lambda: store.check(anas.run_id, BEN, "evaluate")):  # fmt: skip
        with pytest.raises(PermissionDenied, match="belongs to Ana"):
            call()
    assert store.load(anas.run_id).owner == "Ana"  # nothing happened
    assert json.loads(store.export_json([anas.run_id], by=ANA))["runs"][0]["owner"] == "Ana"
    store.delete(anas.run_id, by=TEACHER)
    assert store.runs() == []


def test_the_worker_refuses_an_evaluation_of_another_owners_run(splits, dataset_dir, tmp_path):
    store = RunStore(tmp_path / "runs")
    anas = execute(cfg(keep_weights=True, eval_every=1, eval_subset=10), splits, store, owner="Ana")
    q = JobQueue(tmp_path / "runs" / "queue.sqlite")
    # Queued as Ben: as if the run changed hands between the page's check and the worker's (a job queued directly).
    job = q.submit(anas.config, str(dataset_dir), by=BEN, kind="evaluate", run_id=anas.run_id)
    work(q.path, once=True, cache_dir=tmp_path / "cache")
    done = q.get(job)
    assert done.state == "failed" and "belongs to Ana" in done.message


def test_fair_order_a_queues_five_then_b_one_and_b_starts_second(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite")
    a = [q.submit(cfg(s), "data", by=ANA) for s in range(5)]
    b = q.submit(cfg(9), "data", by=BEN)
    assert q.positions() == {a[0]: 1, b: 2, a[1]: 3, a[2]: 4, a[3]: 5, a[4]: 6}
    started = []
    while (job := q.claim()) is not None:
        started.append(job.job_id)
        q.finish(job.job_id, "finished", None, "")
    assert started[:2] == [a[0], b] and sorted(started) == sorted([*a, b])


def test_a_student_at_the_running_limit_waits_and_others_go_first(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite")
    a1, a2 = (q.submit(cfg(s), "data", by=ANA) for s in range(2))
    b1 = q.submit(cfg(5), "data", by=BEN)
    assert q.claim(below=3).job_id == a1
    assert q.claim(below=3).job_id == b1  # not a2: Ana has one running, the limit
    assert q.claim(below=3) is None and q.next_to_start() == []
    q.finish(a1, "finished", None, "")
    assert q.next_to_start() == [a2] and q.claim(below=3).job_id == a2


def test_the_queued_limit_refuses_the_sixth_and_only_a_teacher_changes_it(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite")
    for s in range(5):
        q.submit(cfg(s), "data", by=ANA)
    with pytest.raises(PermissionDenied, match="Ana has 5 jobs waiting already"):
        q.submit(cfg(6), "data", by=ANA)
    q.submit(cfg(6), "data", by=ANA, kind="timing")  # a page's estimate is not a run: no limit
    for s in range(8):
        q.submit(cfg(s), "data", by=TEACHER)  # teachers have none
    with pytest.raises(PermissionDenied, match="only a teacher"):
        q.set_limits(Limits(running=2, queued=9), by=ANA)
    q.set_limits(Limits(running=2, queued=6), by=TEACHER)
    assert q.limits() == Limits(2, 6)
    q.submit(cfg(6), "data", by=ANA)
    with pytest.raises(ValueError, match="from 1 to 100"):
        Limits(running=0)


def test_single_user_mode_has_no_limits(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite")
    ids = [q.submit(cfg(s), "data", by=SINGLE_USER) for s in range(12)]
    assert [q.claim(below=2).job_id for _ in range(2)] == ids[:2]


def test_older_queues_and_records_read_as_the_local_users(tmp_path):
    path = tmp_path / "q.sqlite"
    with sqlite3.connect(path) as db:  # the queue as it was before owners
        db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, config TEXT NOT NULL, dataset TEXT NOT "
                   "NULL, state TEXT NOT NULL DEFAULT 'queued', created REAL NOT NULL, started REAL, ended REAL, host "
                   "TEXT, pid INTEGER, heartbeat REAL, stop_requested REAL, run_id TEXT, message TEXT NOT NULL DEFAULT "
                   "'', note TEXT NOT NULL DEFAULT '', note_fraction REAL NOT NULL DEFAULT 0)")  # fmt: skip
        db.execute("INSERT INTO jobs (config, dataset, created) VALUES (?, 'data', 1.0)", (cfg().to_json(),))
    old = JobQueue(path).jobs()[0]
    assert (old.owner, old.role, old.actor) == (LOCAL, "teacher", SINGLE_USER)
    record = RunRecord(run_id="r1", status="finished", config=cfg()).to_dict()
    del record["owner"]
    record["schema"] = 2
    assert RunRecord.from_dict(record).owner == LOCAL
    with pytest.raises(ValueError, match="owner must be a name"):
        RunRecord.from_dict(record | {"owner": ""})


def test_an_import_is_the_importers_and_cannot_replace_a_classmates_run(splits, tmp_path):
    a, b = RunStore(tmp_path / "a"), RunStore(tmp_path / "b")
    anas = execute(cfg(), splits, a, owner="Ana")
    blob = a.export_json([anas.run_id], by=ANA)
    assert b.import_json(blob, by=BEN) == [anas.run_id] and b.load(anas.run_id).owner == "Ben"
    with pytest.raises(PermissionDenied, match="belongs to Ben"):
        b.import_json(blob, by=Actor("Cy"))
    assert b.load(anas.run_id).owner == "Ben"
    assert b.import_json(blob, by=TEACHER) and b.load(anas.run_id).owner == "Ana"  # a teacher keeps the owner


def test_the_roster_signs_in_with_the_code_keeps_names_unique_and_clears(tmp_path):
    roster = Roster(tmp_path)
    with pytest.raises(ClassError, match="not this class's code"):
        roster.join("owl-43", "Ana", CLASS)
    ana, token = roster.join(" owl-42 ", "  Ana  ", CLASS)
    assert ana == Actor("Ana") and roster.resolve(token) == ana and len(token) >= 32
    with pytest.raises(ClassError, match="taken in this class"):
        roster.join("owl-42", "ana", CLASS)
    with pytest.raises(ClassError, match="cannot be used"):
        roster.join("owl-42", "<script>", CLASS)
    teacher, teacher_token = roster.join("t-secret", "Ms Lee", CLASS)
    assert teacher.teacher and roster.named("Ms Lee", CLASS).teacher and not roster.named("Ana", CLASS).teacher
    assert roster.resolve("a guess") is None and roster.resolve(None) is None
    roster.clear(by=teacher, free_names=False)
    assert roster.resolve(token) is None and roster.resolve(teacher_token) == teacher
    with pytest.raises(ClassError, match="taken"):  # her runs may remain: the name stays hers
        roster.join("owl-42", "Ana", CLASS)
    roster.clear(by=teacher, free_names=True)
    assert roster.join("owl-42", "Ana", CLASS)[0] == ana
    with pytest.raises(PermissionDenied):
        roster.clear(by=ana, free_names=True)


def test_login_provider_accounts_get_a_free_display_name_and_teachers_by_email(tmp_path):
    roster = Roster(tmp_path)
    settings = read({"SMALLDATA_TEACHERS": "lee@school.org"})
    first = roster.account("ana@school.org", "Ana", settings)
    other = roster.account("ana.b@school.org", "Ana", settings)
    assert (first.name, other.name) == ("Ana", "Ana 2") and roster.account("ANA@school.org", "x", settings) == first
    assert roster.account("lee@school.org", "Ms Lee", settings).teacher


def test_seeds_of_a_recipe_are_distinct_across_the_class(tmp_path):
    roster = Roster(tmp_path)
    seeds = [take_seed(roster, cfg(), "fp", owner) for owner in ("Ana", "Ben", "Ana")]
    assert seeds == [0, 1, 2] and take_seed(roster, cfg(lr=0.01), "fp", "Ben") == 0  # another recipe
    assert take_seed(roster, cfg(), "fp", "Cy", used={3, 4}) == 5


def test_a_lesson_is_pinned_by_a_teacher_only(tmp_path, checkpoint):
    roster = Roster(tmp_path)
    lesson = notebook_lesson(TINY, checkpoint)
    with pytest.raises(PermissionDenied):
        set_lesson(roster, lesson, by=ANA)
    set_lesson(roster, lesson, by=TEACHER)
    assert [p.label for p in pinned(roster)] == [p.label for p in lesson] and len(lesson) == 4


def test_removing_a_student_stops_their_jobs_and_deletes_their_runs(splits, tmp_path):
    store, roster = RunStore(tmp_path), Roster(tmp_path)
    q = JobQueue(tmp_path / "queue.sqlite")
    roster.join("owl-42", "Ana", CLASS)
    execute(cfg(), splits, store, owner="Ana")
    bens = execute(cfg(1), splits, store, owner="Ben")
    job = q.submit(cfg(2), "data", by=ANA)
    with pytest.raises(PermissionDenied):
        remove_student("Ana", q, store, roster, by=BEN)
    assert remove_student("Ana", q, store, roster, by=TEACHER) == {"jobs stopped": 1, "runs deleted": 1}
    assert [r.run_id for r in store.runs()] == [bens.run_id] and q.get(job).state == "stopped"
    assert clear_class(q, store, roster, by=TEACHER, delete_runs=True) == {"jobs stopped": 0, "runs deleted": 1}


def test_the_board_pools_runs_over_owners_with_mean_and_std(splits, tmp_path):
    store = RunStore(tmp_path)
    for seed, owner in enumerate(["Ana", "Ben", "Cy"]):
        execute(cfg(seed), splits, store, owner=owner)
    execute(cfg(0, lr=0.01), splits, store, owner="Ana")  # another recipe, one run
    per_run = pooled_runs(store.runs())
    table = board(per_run)
    assert len(table) == 2
    three = table[table["runs"] == 3].iloc[0]
    accs = per_run[per_run["key"] == three["key"]]["test_acc"]
    assert three["students"] == 3 and three["mean"] == pytest.approx(accs.mean())
    assert three["std"] == pytest.approx(accs.std(ddof=1)) and three["best"] == accs.max()
    assert three["best_by"] == per_run.loc[accs.idxmax(), "owner"]
    shown = board_export(table)
    assert "±" in shown.loc[table.index[table["runs"] == 3][0], "Test accuracy (mean ± std)"]
    assert "(1 run)" in shown.loc[table.index[table["runs"] == 1][0], "Test accuracy (mean ± std)"]
    execute(cfg(0, batch_size=5), splits, store, owner="Ben")  # differs where the label does not look
    assert pooled_runs(store.runs())["recipe"].nunique() == 3  # three recipes, three rows of the chart


def test_expected_wait_shares_the_jobs_ahead_over_the_slots():
    assert expected_wait(1, [60, 60], [30], slots=1) == 30  # next: when the running one ends
    assert expected_wait(3, [60, 60, 60], [30], slots=1) == 150
    assert expected_wait(3, [60, 60, 60], [30, 10], slots=2) == 70


def test_redact_names_no_server_folder():
    text = "cannot read /srv/lab/runs/x.json in /srv/lab (runs are fine)"
    assert redact(text, ["/srv/lab", "/srv/lab/runs"]) == "cannot read <runs>/x.json in <lab> (runs are fine)"


def test_cli_stop_of_another_owners_job_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SMALLDATA_CLASS_CODE", "owl-42")
    runs = ["--runs-dir", str(tmp_path / "runs"), "--dataset", "data"]
    common = ["--method", "scratch", "--preset", "notebook", "--arch", TINY, "--epochs", "1", *runs]
    assert main(["submit", *common, "--owner", "Ana"]) == 0
    job = int(capsys.readouterr().out.strip())
    assert main(["stop", str(job), "--owner", "Ben", *runs]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: job {job} belongs to Ana: only Ana or a teacher can stop it"
    assert main(["stop", str(job), "--owner", "Ana", *runs]) == 0 and "stopped" in capsys.readouterr().out


def test_cli_fair_order_b_starts_second_once_a_worker_runs(dataset_dir, tmp_path, capsys):
    runs = ["--runs-dir", str(tmp_path / "runs"), "--dataset", str(dataset_dir)]
    common = ["--method", "scratch", "--preset", "notebook", "--arch", TINY, "--epochs", "1", "--n-labeled", "30",
              "--cache-dir", str(tmp_path / "c"), *runs]  # fmt: skip
    for owner in ["A"] * 5 + ["B"]:
        assert main(["submit", *common, "--owner", owner]) == 0
    capsys.readouterr()
    assert main(["worker", "--once", "--cache-dir", str(tmp_path / "c"), *runs]) == 0
    assert main(["worker", "--once", "--cache-dir", str(tmp_path / "c"), *runs]) == 0
    capsys.readouterr()
    assert main(["jobs", "--json", *runs]) == 0
    jobs = sorted(json.loads(capsys.readouterr().out), key=lambda j: j["started"] or float("inf"))
    assert [(j["owner"], j["state"]) for j in jobs[:2]] == [("A", "finished"), ("B", "finished")]
    assert all(j["place"] is not None for j in jobs[2:]) and {j["owner"] for j in jobs[2:]} == {"A"}
    saved = RunStore(tmp_path / "runs").runs()
    assert sorted(r.owner for r in saved) == ["A", "B"]


def test_cli_delete_and_evaluate_of_another_owners_run_exit_2_and_the_teacher_may(splits, tmp_path, capsys):
    runs = tmp_path / "runs"
    anas = execute(cfg(), splits, RunStore(runs), owner="Ana")
    Roster(runs).join("t-secret", "Ms Lee", CLASS)
    where = ["--runs-dir", str(runs), "--dataset", "data"]
    for command in ("delete", "evaluate"):
        assert main([command, anas.run_id, "--owner", "Ben", *where]) == 2
        assert capsys.readouterr().err.strip() == (
            f"error: run {anas.run_id} belongs to Ana: only Ana or a teacher can {command} it"
        )
    assert main(["delete", anas.run_id, "--owner", "Ms Lee", *where]) == 0  # the roster says she teaches
    assert RunStore(runs).runs() == []
