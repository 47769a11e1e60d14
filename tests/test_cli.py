import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, env_extra=None):
    env = os.environ | {"PYTHONPATH": str(ROOT)} | (env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "core", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )


def test_train_json_then_runs_lists_it(dataset_dir, tmp_path):
    runs = tmp_path / "runs"
    common = ["--dataset", str(dataset_dir), "--runs-dir", str(runs), "--cache-dir", str(tmp_path / "c")]
    out = run_cli("train", "--method", "scratch", "--preset", "notebook", "--epochs", "2", "--lr", "0.001",
                  "--n-labeled", "30", "--json", *common)  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    for key in ("run_id", "method", "config", "train_acc", "test_acc", "epochs", "seconds", "status"):
        assert key in summary
    assert summary["status"] == "finished" and summary["epochs"] == 2 and summary["test_images"] == 30
    assert "epoch    2/2" in out.stderr
    listed = run_cli("runs", "--json", "--runs-dir", str(runs))
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [summary["run_id"]]
    table = run_cli("runs", "--runs-dir", str(runs))
    assert summary["run_id"] in table.stdout and "| method |" in table.stdout


def test_env_vars_choose_dataset_and_runs_dir(dataset_dir, tmp_path):
    env = {"SMALLDATA_DATASET": str(dataset_dir), "SMALLDATA_RUNS_DIR": str(tmp_path / "envruns"),
           "SMALLDATA_CACHE_DIR": str(tmp_path / "c")}  # fmt: skip
    out = run_cli("train", "--epochs", "1", "--n-labeled", "30", "--json", env_extra=env)
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "envruns").glob("*.json"))) == 1


def test_errors_are_one_line_without_traceback(dataset_dir, tmp_path):
    cases = [
        ("train", "--lr", "0", "--dataset", str(dataset_dir)),
        ("train", "--arch", "vit", "--dataset", str(dataset_dir)),
        ("train", "--dataset", str(tmp_path / "missing"), "--epochs", "1"),
        ("train", "--method", "transfer", "--weights", "nope.pth", "--dataset", str(dataset_dir)),
    ]
    for args in cases:
        out = run_cli(*args, "--runs-dir", str(tmp_path / "r"))
        assert out.returncode == 2, (args, out.stderr)
        assert "Traceback" not in out.stderr
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert lines[-1].startswith("error: ") and len(lines) == 1, out.stderr


def test_sigkill_mid_training_keeps_every_earlier_run(dataset_dir, tmp_path):
    import signal
    import time

    runs = tmp_path / "runs"
    common = [
        "--dataset",
        str(dataset_dir),
        "--runs-dir",
        str(runs),
        "--cache-dir",
        str(tmp_path / "c"),
        "--n-labeled",
        "30",
    ]
    first = run_cli("train", "--epochs", "1", "--lr", "0.001", "--json", *common)
    assert first.returncode == 0, first.stderr
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "core", "train", "--epochs", "500", "--lr", "0.001", *common],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
    for line in proc.stderr:  # wait until it is really training
        if line.startswith("epoch"):
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    listed = run_cli("runs", "--json", "--runs-dir", str(runs))
    assert listed.returncode == 0 and "warning" not in listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [json.loads(first.stdout)["run_id"]]
