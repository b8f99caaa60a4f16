"""Real worker processes sharing one storage: no lost or duplicated trials, grid points exactly once,
kill -9 then resume. Storages: SQLite, journal file, and the PostgreSQL server (marked ``postgres``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest

from edmbench.study import results
from edmbench.study.storage import open_storage

sys.path.insert(0, str(Path(__file__).parent))
import contextlib

from conftest import PYTHON, REPO, run_cli, spec_text, write_spec  # noqa: E402

# 12 grid points: num_steps in {2, ..., 7} x rho in {5, 7}
GRID_SPACE = ('[space.num_steps]\ntype = "int"\nlow = 2\nhigh = 7\n'
              '[space.rho]\ntype = "categorical"\nchoices = [5.0, 7.0]\n')
FAST = ("--no-progress", "--no-report", "--heartbeat", "0.5", "--grace", "20")


def _load(name: str, url: str) -> tuple[optuna.Study, object]:
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    return study, results.trials_table(study)


def _check_grid(table) -> None:
    """Every one of the 12 grid points evaluated exactly once, and nothing else."""
    assert len(table) == 12 and (table["state"] == "COMPLETE").all(), table[["number", "state"]]
    assert sorted(table["grid_index"].astype(int)) == list(range(12))
    assert table[["num_steps", "rho"]].drop_duplicates().shape[0] == 12


def _check_budget(table, n_trials: int) -> None:
    """Exactly ``n_trials`` finished trials; anything else is a labelled over-budget race, never a result."""
    assert len(results.counted(table)) == n_trials, table[["number", "state", "retired"]]
    assert not table["state"].isin(["RUNNING", "WAITING"]).any()  # nothing left behind
    assert table["number"].is_unique
    extra = table[table["retired"].notna()]
    assert extra["retired"].str.startswith("over budget").all()


def _run_workers(tmp_path: Path, text: str, url: str, workers: int) -> None:
    path = write_spec(tmp_path, text)
    run_cli(str(path), "--workers", str(workers), "--storage", url, *FAST, cwd=tmp_path, timeout=240)


def test_four_workers_journal_grid_exactly_once(assets, tmp_path):
    name = "grid-journal"
    url = f"journal:{tmp_path / 'journal.log'}"
    text = spec_text(assets, name, space=GRID_SPACE, search='sampler = "grid"', num_images=16, rungs="[8]")
    _run_workers(tmp_path, text, url, workers=4)
    _check_grid(_load(name, url)[1])


def test_two_workers_sqlite_budget(assets, tmp_path):
    name = "tpe-sqlite"
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _run_workers(tmp_path, spec_text(assets, name, n_trials=8, num_images=16, rungs="[8]"), url, workers=2)
    _check_budget(_load(name, url)[1], 8)


@pytest.mark.postgres
def test_postgres_four_workers_grid_two_workers_budget(assets, tmp_path, postgres_url):
    grid_name, tpe_name = f"grid-{uuid.uuid4().hex[:8]}", f"tpe-{uuid.uuid4().hex[:8]}"
    try:
        text = spec_text(assets, grid_name, space=GRID_SPACE, search='sampler = "grid"', num_images=16,
                         rungs="[8]")
        _run_workers(tmp_path, text, postgres_url, workers=4)
        _check_grid(_load(grid_name, postgres_url)[1])
        text = spec_text(assets, tpe_name, n_trials=8, num_images=16, rungs="[8]")
        _run_workers(tmp_path, text, postgres_url, workers=2)
        _check_budget(_load(tpe_name, postgres_url)[1], 8)
    finally:
        for name in (grid_name, tpe_name):
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=name, storage=postgres_url)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _wait_running(db: Path, url: str, name: str, n_done: int, timeout: float = 300) -> None:
    """Wait until ``n_done`` trials are COMPLETE and one is RUNNING with its knobs chosen (one storage
    object for all polls: opening an RDB storage is slow)."""
    storage = None

    def ready() -> bool:
        nonlocal storage
        if not db.exists():
            return False
        try:
            storage = storage or open_storage(url)
            trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        except Exception:  # the study (or its tables) is still being created by the other process
            return False
        running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
        done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        return len(done) >= n_done and len(running) == 1 and len(running[0].params) == 2

    _wait_for(ready, timeout, f"{n_done} finished trial(s) and a running one")


def test_kill_9_then_resume(assets, tmp_path):
    """SIGKILL a running study; the same command again keeps finished trials, retries the killed one, and
    ends with exactly the requested number of trials."""
    name, n_trials = "killed", 5
    path = write_spec(tmp_path, spec_text(assets, name, n_trials=n_trials, num_images=384, rungs="[128]",
                                          extra="[pruner]\ntype = \"none\"\n"))
    url = f"sqlite:///{tmp_path / 'runs' / name / 'study.db'}"
    args = [PYTHON, str(REPO / "run_study.py"), str(path), "--no-progress", "--no-report", "--heartbeat",
            "0.3", "--grace", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_running(tmp_path / "runs" / name / "study.db", url, name, n_done=2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    study, before = _load(name, url)
    finished = before[before["state"] == "COMPLETE"][["number", "num_steps", "rho", "fid"]]
    killed = before[before["state"] == "RUNNING"]["number"].tolist()
    assert len(killed) == 1
    run_cli(str(path), "--no-progress", "--no-report", "--heartbeat", "0.3", "--grace", "2", cwd=tmp_path,
            timeout=240)
    _, after = _load(name, url)
    assert len(results.counted(after)) == n_trials
    kept = after.set_index("number").loc[finished["number"], ["num_steps", "rho", "fid"]].reset_index()
    assert kept.equals(finished.reset_index(drop=True))  # nothing finished is lost or changed
    dead = after[after["number"] == killed[0]].iloc[0]
    assert dead["state"] == "FAIL" and "no heartbeat" in dead["retired"]
    retry = after[after["retry_of"] == killed[0]]
    assert len(retry) == 1 and retry.iloc[0]["state"] == "COMPLETE"
    assert retry.iloc[0]["num_steps"] == dead["num_steps"] and retry.iloc[0]["rho"] == dead["rho"]


def test_ctrl_c_stops_cleanly_and_resumes(assets, tmp_path):
    """SIGINT during a trial: exit code 130, the trial is retired with a retry enqueued; the same command
    again finishes the budget."""
    name, n_trials = "interrupted", 4
    path = write_spec(tmp_path, spec_text(assets, name, n_trials=n_trials, num_images=384, rungs="[128]",
                                          extra="[pruner]\ntype = \"none\"\n"))
    url = f"sqlite:///{tmp_path / 'runs' / name / 'study.db'}"
    args = [PYTHON, str(REPO / "run_study.py"), str(path), "--no-progress", "--no-report"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_running(tmp_path / "runs" / name / "study.db", url, name, n_done=1)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    _, before = _load(name, url)
    assert not (before["state"] == "RUNNING").any()
    stopped = before[before["retired"].notna()]
    assert len(stopped) == 1 and "interrupted by the user" in stopped.iloc[0]["retired"]
    assert (before["state"] == "WAITING").sum() == 1  # its retry
    run_cli(str(path), "--no-progress", "--no-report", cwd=tmp_path, timeout=240)
    _, after = _load(name, url)
    assert len(results.counted(after)) == n_trials
    assert after[after["retry_of"] == stopped.iloc[0]["number"]]["state"].tolist() == ["COMPLETE"]
