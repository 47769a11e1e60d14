import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import main
from core.methods.registry import preset
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, env_extra=None):
    env = os.environ | {"PYTHONPATH": str(ROOT)} | (env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "core", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )


def test_train_json_then_runs_lists_it(dataset_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    common = ["--dataset", str(dataset_dir), "--runs-dir", str(runs), "--cache-dir", str(tmp_path / "c")]
    code = main(["train", "--method", "scratch", "--preset", "notebook", "--arch", TINY, "--epochs", "2",
                 "--lr", "0.001", "--n-labeled", "30", "--json", *common])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    summary = json.loads(out.out)
    for key in ("run_id", "method", "config", "train_acc", "test_acc", "epochs", "seconds", "status", "unit"):
        assert key in summary
    assert summary["status"] == "finished" and summary["epochs"] == 2 and summary["test_images"] == 30
    assert "epoch    2/2" in out.err
    assert main(["runs", "--json", "--runs-dir", str(runs)]) == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)] == [summary["run_id"]]
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    table = capsys.readouterr().out
    assert summary["run_id"] in table and "| method |" in table


def test_the_older_semi_spelling_still_works(dataset_dir, checkpoint, tmp_path, capsys):
    code = main(["train", "--method", "semi", "--semi", "labelspread", "--arch", TINY, "--weights", checkpoint,
                 "--resolution", "32", "--per-class", "3", "--knn", "3", "--epochs", "3", "--n-labeled", "30",
                 "--dataset", str(dataset_dir), "--runs-dir", str(tmp_path / "r"), "--json"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    summary = json.loads(out.out)
    rows = preset("labelspread", "recommended").rounds + 1  # round 0 is the probe on the labeled images
    assert summary["method"] == "labelspread" and summary["unit"] == "round" and summary["rounds"] == rows
    assert f"round    {rows}/{rows}" in out.err


@pytest.mark.parametrize(
    "args",
    [
        ("--lr", "0"),
        ("--arch", "vit"),
        ("--epochs", "1", "--missing-dataset"),
        ("--method", "transfer", "--weights", "nope.pth"),
        ("--warmup-epochs", "500", "--epochs", "10"),
    ],
)
def test_errors_are_one_line_in_process(dataset_dir, tmp_path, capsys, args):
    dataset = str(tmp_path / "missing") if "--missing-dataset" in args else str(dataset_dir)
    args = [a for a in args if a != "--missing-dataset"]
    assert main(["train", *args, "--dataset", dataset, "--runs-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and len(lines) == 1, err
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("*.json"))


def test_env_vars_choose_dataset_and_runs_dir(dataset_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SMALLDATA_DATASET", str(dataset_dir))
    monkeypatch.setenv("SMALLDATA_RUNS_DIR", str(tmp_path / "envruns"))
    monkeypatch.setenv("SMALLDATA_CACHE_DIR", str(tmp_path / "c"))
    code = main(["train", "--preset", "notebook", "--arch", TINY, "--epochs", "1", "--n-labeled", "30", "--json"])
    assert code == 0, capsys.readouterr().err
    assert len(list((tmp_path / "envruns").glob("*.json"))) == 1


@pytest.mark.slow
def test_errors_are_one_line_without_traceback(tmp_path):
    """A real process: what it prints at import time counts too (every case runs in-process above)."""
    out = run_cli(
        "train",
        "--preset",
        "notebook",
        "--dataset",
        str(tmp_path / "missing"),
        "--epochs",
        "1",
        "--runs-dir",
        str(tmp_path / "r"),
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and len(lines) == 1, out.stderr


@pytest.mark.slow
def test_sigkill_mid_training_keeps_every_earlier_run(dataset_dir, tmp_path, capsys):
    """The run saved before stays listed after a training process is killed (only that process is real)."""
    import signal
    import time

    runs = tmp_path / "runs"
    common = ["--dataset", str(dataset_dir), "--runs-dir", str(runs), "--cache-dir", str(tmp_path / "c"),
              "--n-labeled", "30"]  # fmt: skip
    assert (
        main(["train", "--preset", "notebook", "--arch", TINY, "--epochs", "1", "--lr", "0.001", "--json", *common])
        == 0
    )
    first = json.loads(capsys.readouterr().out)["run_id"]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    args = ["train", "--preset", "notebook", "--arch", TINY, "--epochs", "5000", "--lr", "0.001", *common]
    proc = subprocess.Popen([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # wait until it is really training
        if line.startswith("epoch"):
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert main(["runs", "--json", "--runs-dir", str(runs)]) == 0
    listed = capsys.readouterr()
    assert "warning" not in listed.err
    assert [r["run_id"] for r in json.loads(listed.out)] == [first]


def test_with_json_an_error_is_json_too(dataset_dir, tmp_path, capsys):
    args = ["train", "--lr", "-1", "--dataset", str(dataset_dir), "--runs-dir", str(tmp_path / "r")]
    assert main([*args, "--json"]) == 2
    out = capsys.readouterr()
    assert json.loads(out.out) == {"error": "lr=-1.0 is out of range; accepted: [1e-06, 10]"} and out.err == ""
    assert main(args) == 2 and capsys.readouterr().err.startswith("error: lr=-1.0")


@pytest.mark.slow  # subprocesses (a fifth of a second each)
def test_a_value_out_of_range_is_refused_before_torch_is_imported():
    out = run_cli("train", "--lr", "-1", "--dataset", "anything", env_extra={"PYTHONPROFILEIMPORTTIME": "1"})
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if not line.startswith("import time:")]
    assert lines == ["error: lr=-1.0 is out of range; accepted: [1e-06, 10]"]
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported and "core.config" in imported  # the check ran, and torch never loaded
    as_json = run_cli("submit", "--epochs=0", "--json")
    assert as_json.returncode == 2 and json.loads(as_json.stdout) == {
        "error": "epochs=0 is out of range; accepted: [1, 10000]"
    }
