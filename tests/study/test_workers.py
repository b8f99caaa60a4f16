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


@pytest.mark.slow  # ~20 s of worker start-ups; exactly-once stays covered by the kill/Ctrl-C tests
def test_four_workers_journal_grid_exactly_once(assets, tmp_path):
    name = "grid-journal"
    url = f"journal:{tmp_path / 'journal.log'}"
    text = spec_text(assets, name, space=GRID_SPACE, search='sampler = "grid"', num_images=16, rungs="[8]")
    _run_workers(tmp_path, text, url, workers=4)
    _check_grid(_load(name, url)[1])


@pytest.mark.slow  # ~20 s of worker start-ups; exactly-once stays covered by the kill/Ctrl-C tests
def test_two_workers_sqlite_budget(assets, tmp_path):
    name = "tpe-sqlite"
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _run_workers(tmp_path, spec_text(assets, name, n_trials=8, num_images=16, rungs="[8]"), url, workers=2)
    _check_budget(_load(name, url)[1], 8)


@pytest.mark.slow  # ~45 s; PostgreSQL stays covered by test_exactly_once's default tests
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


# ---- interruption: the trial to interrupt is held RUNNING by tests/study/gated_evaluator.py --------------

GATED = f"{Path(__file__).parent / 'gated_evaluator.py'}:make_gated_evaluator"
EVENT_BOUND_S = 600.0  # generous: only a run that is broken (or stuck) ever reaches it


def _storage_state(url: str, name: str) -> str:
    """What the storage holds, for a failure message: trial numbers by state."""
    try:
        trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials(deepcopy=False)
    except Exception as exc:  # no study yet, or the storage cannot be read
        return f"storage {url}: study {name!r} not readable ({type(exc).__name__}: {exc})"
    by_state: dict[str, list[int]] = {}
    for t in trials:
        by_state.setdefault(t.state.name, []).append(t.number)
    return f"storage {url}: trials by state {by_state or '{}'}"


def _start_held(tmp_path: Path, path: Path, hold_from: int, *extra: str) -> tuple[subprocess.Popen, Path]:
    """Start ``run_study.py`` whose trial number ``hold_from`` waits (RUNNING) at the gate."""
    gate = tmp_path / "gate"
    gate.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "EDMBENCH_TEST_GATE": str(gate),
           "EDMBENCH_TEST_HOLD_FROM": str(hold_from)}
    args = [PYTHON, str(REPO / "run_study.py"), str(path), "--no-progress", "--no-report",
            "--evaluator", GATED, *extra]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=_default_sigint)
    return proc, gate


def _default_sigint() -> None:
    """SIGINT as in a terminal: a suite started in the background (``cmd &``, nohup) inherits it ignored,
    and the Ctrl-C test would then wait for a command that never stops."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_held(proc: subprocess.Popen, gate: Path, number: int, url: str, name: str) -> None:
    """Wait for the event "trial ``number`` is held": its marker file. Fails with a diagnosis (the storage's
    state, the process's exit and stderr) if the run ends first or the generous bound passes."""
    marker = gate / f"holding-{number}"
    start = time.monotonic()
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the study exited ({proc.returncode}) before trial {number} started; "
                                 f"{_storage_state(url, name)}\n{proc.stderr.read().decode()[-3000:]}")
        if time.monotonic() - start > EVENT_BOUND_S:
            raise AssertionError(f"trial {number} not started after {EVENT_BOUND_S:g} s; "
                                 f"{_storage_state(url, name)}")
        time.sleep(0.1)


def _assert_held_state(url: str, name: str, n_done: int) -> None:
    """While trial ``n_done`` is held: exactly ``n_done`` COMPLETE and that one RUNNING, knobs chosen."""
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials(deepcopy=False)
    done = [t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(done) == n_done and [t.number for t in running] == [n_done] and len(running[0].params) == 2, \
        _storage_state(url, name)


def _resume(tmp_path: Path, path: Path, gate: Path, *extra: str) -> None:
    """The same command again, with the gate open (nothing held); fails with the storage's state."""
    (gate / "open").touch()
    proc, _ = _start_held(tmp_path, path, 0, *extra)
    try:
        _, stderr = proc.communicate(timeout=EVENT_BOUND_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, f"resume exited {proc.returncode}\n{stderr.decode()[-3000:]}"


def test_kill_9_then_resume(assets, tmp_path):
    """SIGKILL a running study; the same command again keeps finished trials, retries the killed one, and
    ends with exactly the requested number of trials."""
    name, n_trials, n_done = "killed", 5, 2
    path = write_spec(tmp_path, spec_text(assets, name, n_trials=n_trials, num_images=64, rungs="[32]",
                                          extra="[pruner]\ntype = \"none\"\n"))
    url = f"sqlite:///{tmp_path / 'runs' / name / 'study.db'}"
    beat = ("--heartbeat", "0.3", "--grace", "2")
    proc, gate = _start_held(tmp_path, path, n_done, *beat)
    try:
        _wait_held(proc, gate, n_done, url, name)
        _assert_held_state(url, name, n_done)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=EVENT_BOUND_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    study, before = _load(name, url)
    finished = before[before["state"] == "COMPLETE"][["number", "num_steps", "rho", "fid"]]
    killed = before[before["state"] == "RUNNING"]["number"].tolist()
    assert killed == [n_done], _storage_state(url, name)
    _resume(tmp_path, path, gate, *beat)
    _, after = _load(name, url)
    assert len(results.counted(after)) == n_trials, _storage_state(url, name)
    kept = after.set_index("number").loc[finished["number"], ["num_steps", "rho", "fid"]].reset_index()
    assert kept.equals(finished.reset_index(drop=True))  # nothing finished is lost or changed
    dead = after[after["number"] == killed[0]].iloc[0]
    assert dead["state"] == "FAIL" and "no heartbeat" in dead["retired"], _storage_state(url, name)
    retry = after[after["retry_of"] == killed[0]]
    assert len(retry) == 1 and retry.iloc[0]["state"] == "COMPLETE", _storage_state(url, name)
    assert retry.iloc[0]["num_steps"] == dead["num_steps"] and retry.iloc[0]["rho"] == dead["rho"]


def test_ctrl_c_stops_cleanly_and_resumes(assets, tmp_path):
    """SIGINT during a trial: exit code 130, the trial is retired with a retry enqueued; the same command
    again finishes the budget."""
    name, n_trials, n_done = "interrupted", 4, 1
    path = write_spec(tmp_path, spec_text(assets, name, n_trials=n_trials, num_images=64, rungs="[32]",
                                          extra="[pruner]\ntype = \"none\"\n"))
    url = f"sqlite:///{tmp_path / 'runs' / name / 'study.db'}"
    proc, gate = _start_held(tmp_path, path, n_done)
    try:
        _wait_held(proc, gate, n_done, url, name)
        _assert_held_state(url, name, n_done)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=EVENT_BOUND_S) == 130, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    _, before = _load(name, url)
    assert not (before["state"] == "RUNNING").any(), _storage_state(url, name)
    stopped = before[before["retired"].notna()]
    assert len(stopped) == 1, _storage_state(url, name)
    assert "interrupted by the user" in stopped.iloc[0]["retired"]
    assert (before["state"] == "WAITING").sum() == 1, _storage_state(url, name)  # its retry
    _resume(tmp_path, path, gate)
    _, after = _load(name, url)
    assert len(results.counted(after)) == n_trials, _storage_state(url, name)
    assert after[after["retry_of"] == stopped.iloc[0]["number"]]["state"].tolist() == ["COMPLETE"]
