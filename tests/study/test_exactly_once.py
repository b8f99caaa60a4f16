"""Fault injection: SIGINT (to the process group, as a terminal's Ctrl-C), SIGTERM (to the command) and
SIGKILL (to the whole group) at several moments, from database creation on, with one and several workers, on
SQLite, journal files and PostgreSQL. Afterwards the same command finishes the study: exactly the requested
trials, every grid point evaluated exactly once, no trial left RUNNING or WAITING, and a report written.

Moments are storage states (the storage file appears, the first trial exists, a trial runs, half the grid is
done), never wall-clock delays. The default suite runs a few combinations; ``-m slow`` runs the full matrix
``EDMBENCH_FAULT_REPS`` times (default 3).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest

from edmbench.study.record import ATTR_GRID_INDEX, ATTR_RETIRED
from edmbench.study.storage import open_storage

sys.path.insert(0, str(Path(__file__).parent))
from conftest import PYTHON, REPO, run_cli, spec_text, write_spec  # noqa: E402

GRID_SPACE = ('[space.num_steps]\ntype = "int"\nlow = 2\nhigh = 7\n'
              '[space.rho]\ntype = "categorical"\nchoices = [5.0, 7.0]\n')  # 12 grid points
N_GRID = 12
FAST = ("--no-progress", "--heartbeat", "0.3", "--grace", "5")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
SIGNALS = {"int": signal.SIGINT, "term": signal.SIGTERM, "kill": signal.SIGKILL}
MOMENTS = ("file", "trial", "running", "half")
NO_PRUNING = '[pruner]\ntype = "none"\n'  # a retried grid point would otherwise meet a pruner with history


def _url(kind: str, tmp_path: Path, postgres: str | None) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'runs' / 'study.db'}"
    if kind == "journal":
        return f"journal:{tmp_path / 'runs' / 'journal.log'}"
    return postgres


class Probe:
    """Trial counts by state, read from the storage without taking edmbench's locks."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name, self._storage, self._engine = url, name, None, None

    def exists(self) -> bool:
        """The storage is being created: its file exists (SQLite, journal), or the study's row (PostgreSQL,
        whose tables outlive each study), before any trial is enqueued."""
        if self.url.startswith("sqlite:///"):
            return Path(self.url[len("sqlite:///"):]).exists()
        if self.url.startswith("journal:"):
            return Path(self.url[len("journal:"):]).exists()
        try:
            return bool(self._pg(f"SELECT count(*) FROM studies WHERE study_name = '{self.name}'")[0][0])
        except Exception:  # tables not created yet
            return False

    def _pg(self, query: str) -> list:
        import sqlalchemy

        if self._engine is None:  # one connection for all polls (a new one each poll costs a server fork)
            self._engine = sqlalchemy.create_engine(self.url, pool_size=1)
        with self._engine.connect() as conn:
            return conn.execute(sqlalchemy.text(query)).fetchall()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def states(self) -> dict[str, int] | None:
        try:
            if self.url.startswith("journal:"):
                self._storage = self._storage or open_storage(self.url)
                study = optuna.load_study(study_name=self.name, storage=self._storage)
                out: dict[str, int] = {}
                for t in study.get_trials(deepcopy=False):
                    out[t.state.name] = out.get(t.state.name, 0) + 1
                return out
            query = ("SELECT t.state, count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
                     f"WHERE s.study_name = '{self.name}' GROUP BY t.state")
            if self.url.startswith("sqlite:///"):
                with contextlib.closing(sqlite3.connect(self.url[len("sqlite:///"):], timeout=30)) as conn:
                    return dict(conn.execute(query).fetchall())
            rows = self._pg(query)
            return {r[0]: r[1] for r in rows} if rows else None
        except Exception:  # tables or study not created yet
            return None

    def reached(self, moment: str) -> bool:
        if moment == "file":
            return self.exists()
        states = self.states() or {}
        if moment == "trial":
            return sum(states.values()) > 0
        if moment == "running":
            return states.get("RUNNING", 0) > 0
        return states.get("COMPLETE", 0) >= N_GRID // 2


def _default_sigint() -> None:
    """In the command: SIGINT as in a terminal. A test run started in the background (``cmd &`` in a script,
    nohup) inherits SIGINT ignored, and the "int" cases would then test nothing (the command finishes)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(args: list[str], cwd: Path, probe: Probe, moment: str, sig: str) -> tuple[int, str]:
    """Start the command in its own process group, signal it once ``moment`` is reached, wait for it.
    Returns its exit status and stderr."""
    proc = subprocess.Popen(args, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=_default_sigint)
    try:
        while not probe.reached(moment):
            if proc.poll() is not None:  # finished before the moment (a fast study): nothing to interrupt
                return proc.returncode, proc.stderr.read()
            time.sleep(0.002 if moment == "file" else 0.02)
        if sig == "term":
            os.kill(proc.pid, signal.SIGTERM)  # `kill PID`: the command only
        else:
            os.killpg(proc.pid, SIGNALS[sig])  # Ctrl-C / kill -9 of the whole group
        _, err = proc.communicate(timeout=300)
        return proc.returncode, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftover workers of a killed parent


def finish_or_dump(args: list[str], cwd: Path, timeout: float = 600) -> None:
    """Run the command to completion (exit 0). If it is still running after ``timeout`` seconds (a hang),
    every process of its group prints its threads' stacks (SIGUSR1, ``faulthandler``) into the failure."""
    proc = subprocess.Popen(args, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tree = subprocess.run(["ps", "-o", "pid,ppid,stat,etime,args", "-g", str(proc.pid)],
                              capture_output=True, text=True).stdout
        os.killpg(proc.pid, signal.SIGUSR1)
        time.sleep(5)
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"still running after {timeout:g} s:\n{tree}\n{err[-30000:]}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"exited {proc.returncode}\n{out[-2000:]}\n{err[-4000:]}"


def check_finished(url: str, name: str, *, grid: bool, n_trials: int) -> None:
    """Exactly the requested trials, grid points once each, nothing RUNNING or WAITING."""
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    trials = study.get_trials(deepcopy=False)
    stuck = [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert not stuck, f"trials left running/waiting: {stuck}"
    counted = [t for t in trials if ATTR_RETIRED not in t.system_attrs]
    assert len(counted) == n_trials, [(t.number, t.state.name, t.system_attrs.get(ATTR_RETIRED))
                                      for t in trials]
    assert all(t.state.name == "COMPLETE" for t in counted), [(t.number, t.state.name) for t in counted]
    if grid:
        assert sorted(t.user_attrs[ATTR_GRID_INDEX] for t in counted) == list(range(N_GRID))
        assert len({tuple(sorted(t.params.items())) for t in counted}) == N_GRID


def fault_case(assets, tmp_path: Path, storage: str, workers: int, sig: str, moment: str,
               postgres: str | None = None, report: bool = False) -> None:
    """One interrupted run, then the same command to completion, then the checks."""
    name = f"fault-{uuid.uuid4().hex[:8]}"
    url = _url(storage, tmp_path, postgres)
    text = spec_text(assets, name, space=GRID_SPACE, search='sampler = "grid"', num_images=16, rungs="[8]",
                     extra=NO_PRUNING)
    path = write_spec(tmp_path, text)
    common = [str(path), "--storage", url, "--workers", str(workers), *FAST]
    probe = Probe(url, name)
    try:
        rc, err = _interrupt([PYTHON, str(REPO / "run_study.py"), *common, "--no-report"], tmp_path,
                             probe, moment, sig)
        probe.close()
        assert rc in (0, 130, -signal.SIGKILL), f"interrupted run exited {rc}\n{err[-4000:]}"
        tail = () if report else ("--no-report",)
        finish_or_dump([PYTHON, str(REPO / "run_study.py"), *common, *tail], tmp_path)
        check_finished(url, name, grid=True, n_trials=N_GRID)
        if report:
            assert (tmp_path / "runs" / name / "summary.md").is_file()
    finally:
        probe.close()
        if storage == "postgres":
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=name, storage=url)


# ---- default suite: a few combinations ---------------------------------------------------------------

@pytest.mark.parametrize(("storage", "workers", "sig", "moment"), [
    ("sqlite", 3, "int", "running"),   # Ctrl-C reaches parent and workers: no grid point may be lost
    ("journal", 1, "kill", "file"),    # kill -9 while the storage is being created
])
def test_signal_then_resume_exactly_once(assets, tmp_path, storage, workers, sig, moment):
    fault_case(assets, tmp_path, storage, workers, sig, moment, report=storage == "sqlite")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


@pytest.mark.slow  # ~25 s of worker start-ups
@pytest.mark.parametrize("kind", ["sqlite", "journal", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_dead_worker_does_not_fail_the_command(assets, tmp_path, request, kind):
    """kill -9 of one worker process: the others retry its trial, the command exits 0 with a report."""
    name = f"dead-worker-{uuid.uuid4().hex[:8]}"
    url = _url(kind, tmp_path, request.getfixturevalue("postgres_url") if kind == "postgres" else None)
    text = spec_text(assets, name, space=GRID_SPACE, search='sampler = "grid"', num_images=16, rungs="[8]",
                     extra=NO_PRUNING)
    path = write_spec(tmp_path, text)
    args = [PYTHON, str(REPO / "run_study.py"), str(path), "--storage", url, "--workers", "3", *FAST]
    proc = subprocess.Popen(args, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    probe = Probe(url, name)
    try:
        while not (probe.reached("running") and len(_children(proc.pid)) >= 2):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        workers = [c for c in _children(proc.pid) if "resource_tracker" not in
                   Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")]
        os.kill(workers[-1], signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert (tmp_path / "runs" / name / "summary.md").is_file()
        check_finished(url, name, grid=True, n_trials=N_GRID)
    finally:
        probe.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if kind == "postgres":
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=name, storage=url)


# ---- the storage primitives, raced directly (no subprocess) ------------------------------------------

def _grid_study(url: str, name: str, points: int):
    study = optuna.create_study(study_name=name, storage=open_storage(url))
    for i in range(points):
        study.enqueue_trial({"x": float(i)})
    return study


@pytest.mark.parametrize("kind", ["sqlite", "journal", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_claims_are_exclusive_across_storage_objects(tmp_path, request, kind):
    """Eight threads, each with its own storage object (as separate processes have), claim 40 WAITING
    trials: every trial is claimed exactly once (SQLite ignores FOR UPDATE; the claim must not need it)."""
    import threading

    from edmbench.study import _optuna

    url = _url(kind, tmp_path, request.getfixturevalue("postgres_url") if kind == "postgres" else None)
    name = f"claims-{uuid.uuid4().hex[:8]}"
    study = _grid_study(url, name, 40)
    ids = [_optuna.trial_id(t) for t in study.get_trials(deepcopy=False)]
    wins: list[int] = []
    lock = threading.Lock()

    def claimer() -> None:
        mine = optuna.load_study(study_name=name, storage=open_storage(url))
        for tid in ids:
            if _optuna.claim_waiting(mine, tid):
                with lock:
                    wins.append(tid)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if kind == "postgres":
        optuna.delete_study(study_name=name, storage=url)
    assert sorted(wins) == sorted(ids)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_live_trial_retired_elsewhere_does_not_kill_its_owner(tmp_path, kind):
    """Another process retires a running trial: its owner drops the result quietly (no 'Cannot tell a FAIL
    trial'), exactly one retry is enqueued, and a second retirer loses."""
    from edmbench.study import _optuna, runner
    from edmbench.study.record import ATTR_RETRY_FOR

    url = _url(kind, tmp_path, None)
    study = _grid_study(url, "retire", 1)
    other = optuna.load_study(study_name="retire", storage=open_storage(url))
    trial = _optuna.live_trial(study, runner._claim_waiting(study))

    def evaluator(live, progress):
        frozen = other.get_trials(deepcopy=False)[0]
        assert runner.retire(other, frozen, "interrupted: test", retry=True)
        assert not runner.retire(other, frozen, "interrupted: test again", retry=True)
        return 1.0

    options = runner.RunOptions(heartbeat_s=30.0)
    assert runner.evaluate(study, trial, evaluator, options, None) == "RETIRED"
    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert trials[1].system_attrs[ATTR_RETRY_FOR] == 0 and trials[0].system_attrs[ATTR_RETIRED] == \
        "interrupted: test"
    with runner.storage_lock(url):
        assert runner.enqueue_missing_retries(study) == 0  # reconciling again adds nothing


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_initialisation_stopped_half_way_is_finished_by_the_next_open(assets, tmp_path, kind):
    """A creator killed after enqueueing 5 of the 12 grid points, before the "initialised" mark: the next
    open enqueues the other 7 (each point once), marks the study, and a third open changes nothing."""
    from edmbench.study.record import enqueue_attrs
    from edmbench.study.space import grid_points
    from edmbench.study.spec import parse_spec
    from edmbench.study.storage import ATTR_READY, ATTR_SPEC_HASH, directions, open_study

    spec = parse_spec(spec_text(assets, "half", space=GRID_SPACE, search='sampler = "grid"', num_images=16,
                                rungs="[8]", extra=NO_PRUNING))
    url = _url(kind, tmp_path, None)
    study = optuna.create_study(study_name="half", storage=open_storage(url), directions=directions(spec))
    study.set_user_attr(ATTR_SPEC_HASH, spec.spec_hash)
    for index, point in enumerate(list(grid_points(spec.space, spec.fixed, spec.constraints))[:5]):
        study.enqueue_trial(point, user_attrs=enqueue_attrs(grid_index=index))
    assert ATTR_READY not in study.user_attrs
    for _ in range(2):
        again = open_study(spec, open_storage(url))
        trials = again.get_trials(deepcopy=False)
        assert sorted(t.user_attrs[ATTR_GRID_INDEX] for t in trials) == list(range(N_GRID))
        assert {t.state.name for t in trials} == {"WAITING"} and again.user_attrs[ATTR_READY]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_retirer_stopped_before_its_retry_is_reconciled_on_open(assets, tmp_path, kind):
    """A retirer dies between the FAIL (with ``edmbench:retry``) and enqueueing the retry: the next open of
    the study enqueues exactly one retry with the same parameters, and later opens add none."""
    from edmbench.study import _optuna, runner
    from edmbench.study.record import ATTR_RETRY, ATTR_RETRY_FOR
    from edmbench.study.spec import parse_spec
    from edmbench.study.storage import open_study

    spec = parse_spec(spec_text(assets, "retire", space=GRID_SPACE, search='sampler = "grid"', num_images=16,
                                rungs="[8]", extra=NO_PRUNING))
    url = _url(kind, tmp_path, None)
    study = open_study(spec, open_storage(url))
    tid = runner._claim_waiting(study)
    assert _optuna.retire_running(study, tid, {ATTR_RETIRED: "interrupted: test", ATTR_RETRY: True})
    for _ in range(2):
        trials = open_study(spec, open_storage(url)).get_trials(deepcopy=False)
        retired = [t for t in trials if _optuna.trial_id(t) == tid][0]
        retries = [t for t in trials if t.system_attrs.get(ATTR_RETRY_FOR) == retired.number]
        assert len(trials) == N_GRID + 1 and len(retries) == 1 and retries[0].state.name == "WAITING"
        assert retries[0].system_attrs["fixed_params"] == retired.system_attrs["fixed_params"]
        assert retries[0].user_attrs[ATTR_GRID_INDEX] == retired.user_attrs[ATTR_GRID_INDEX]


@pytest.mark.parametrize(("kind", "what"), [("sqlite", "database"), ("journal", "journal")])
def test_corrupt_study_storage_is_one_clear_line(assets, tmp_path, monkeypatch, capsys, kind, what):
    from edmbench.study.cli import main as cli_main

    url = _url(kind, tmp_path, None)
    store = Path(url.split(":", 1)[1].removeprefix("///"))
    store.parent.mkdir(parents=True)
    store.write_bytes(b"this is not a study storage\n" * 100)
    path = write_spec(tmp_path, spec_text(assets, "corrupt"))
    monkeypatch.chdir(tmp_path)
    assert cli_main([str(path), "--no-progress", "--storage", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"is not a readable study {what}" in err[0] and "Traceback" not in err[0], err


@pytest.mark.postgres
def test_two_commands_on_a_brand_new_postgres_database(assets, tmp_path, postgres_url):
    """Both create the tables and the study at once: neither crashes, the grid runs exactly once."""
    import sqlalchemy

    db = f"edmbench_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {db}"))
    url = postgres_url.rsplit("/", 1)[0] + "/" + db
    try:
        name = "fresh"
        text = spec_text(assets, name, space=GRID_SPACE, search='sampler = "grid"', num_images=16,
                         rungs="[8]", extra=NO_PRUNING)
        path = write_spec(tmp_path, text)
        args = [PYTHON, str(REPO / "run_study.py"), str(path), "--storage", url, "--workers", "2", *FAST,
                "--no-report"]
        procs = [subprocess.Popen(args, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
        assert all(rc == 0 for rc, _ in outs), outs
        check_finished(url, name, grid=True, n_trials=N_GRID)
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        admin.dispose()


# ---- parallel TPE: no duplicated work ---------------------------------------------------------------

def _no_duplicate_params(url: str, name: str, n_trials: int) -> None:
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    counted = [t for t in study.get_trials(deepcopy=False) if ATTR_RETIRED not in t.system_attrs]
    assert len(counted) == n_trials
    params = [t.params["rho"] for t in counted]
    assert len(set(params)) == len(params), sorted(params)  # rho is continuous: equal means duplicated


TPE_SPACE = '[space.rho]\ntype = "float"\nlow = 2.0\nhigh = 10.0\n'


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("journal", marks=pytest.mark.slow)])  # ~30 s each
def test_parallel_tpe_workers_never_duplicate_parameters(assets, tmp_path, kind):
    """Three workers, 12 TPE trials over a continuous rho: no two trials share a value (every sampled trial
    has its own seed; see runner.trial_seed)."""
    name, url = "tpe-par", _url(kind, tmp_path, None)
    text = spec_text(assets, name, space=TPE_SPACE, n_trials=12, num_images=16, rungs="[8]").replace(
        '[fixed]\nsampler = "heun"', '[fixed]\nsampler = "heun"\nnum_steps = 4')
    path = write_spec(tmp_path, text)
    run_cli(str(path), "--storage", url, "--workers", "3", *FAST, "--no-report", cwd=tmp_path, timeout=600)
    _no_duplicate_params(url, name, 12)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_tpe_commands_on_postgres_never_duplicate_parameters(assets, tmp_path, postgres_url):
    name = f"tpe-{uuid.uuid4().hex[:8]}"
    text = spec_text(assets, name, space=TPE_SPACE, n_trials=10, num_images=16, rungs="[8]").replace(
        '[fixed]\nsampler = "heun"', '[fixed]\nsampler = "heun"\nnum_steps = 4')
    path = write_spec(tmp_path, text)
    args = [PYTHON, str(REPO / "run_study.py"), str(path), "--storage", postgres_url, "--workers", "2",
            *FAST, "--no-report"]
    try:
        procs = [subprocess.Popen(args, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
        assert all(rc == 0 for rc, _ in outs), outs
        _no_duplicate_params(postgres_url, name, 10)
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=postgres_url)


# ---- the full matrix, repeated ------------------------------------------------------------------------

REPS = int(os.environ.get("EDMBENCH_FAULT_REPS", "3"))
# storages innermost: a partial run still covers every storage
MATRIX = [(storage, workers, sig, moment) for moment, sig, workers, storage
          in itertools.product(MOMENTS, tuple(SIGNALS), (3, 1), ("sqlite", "journal", "postgres"))]


@pytest.mark.slow
@pytest.mark.parametrize("rep", range(REPS))
@pytest.mark.parametrize(("storage", "workers", "sig", "moment"), MATRIX)
def test_fault_matrix(assets, tmp_path, request, storage, workers, sig, moment, rep):
    postgres = request.getfixturevalue("postgres_url") if storage == "postgres" else None
    fault_case(assets, tmp_path, storage, workers, sig, moment, postgres=postgres, report=True)


def _file_size_limit(limit: int):
    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail (EFBIG) instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_full_disk_mid_search_is_reported_and_resumed(assets, tmp_path, kind):
    """The storage file cannot grow (RLIMIT_FSIZE, as on a full disk): the command stops with one line that
    names the storage failure; once there is room, the same command finishes the budget with exactly the
    requested trials and nothing left RUNNING. SQLite: no room at all (its pages fill first); journal: room
    for about one more trial, so the append that fails is cut part-way through a trial's records."""
    name = "full"
    url = _url(kind, tmp_path, None)
    store = Path(url.split(":", 1)[1].removeprefix("///"))
    text = spec_text(assets, name, n_trials=24, num_images=16, rungs="[8]", extra=NO_PRUNING)
    path = write_spec(tmp_path, text)
    base = [str(path), "--storage", url, "--no-progress", "--no-report", "--heartbeat", "0.3", "--grace", "2"]
    run_cli(*base, "--n-trials", "2", cwd=tmp_path, timeout=600)
    size = store.stat().st_size
    limit = size if kind == "sqlite" else size + size // 3 + 7  # journal: ~ one more trial, then torn
    args = [PYTHON, str(REPO / "run_study.py"), *base]
    proc = subprocess.run(args, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600,
                          preexec_fn=_file_size_limit(limit))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines[-1].startswith("error: ") and "could not be written" in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
    if kind == "journal":
        assert store.read_bytes().endswith(b"\n") and store.stat().st_size <= limit
        made = optuna.load_study(study_name=name, storage=open_storage(url)).trials
        assert 2 < len(made) < 24, len(made)  # stopped mid-search
    run_cli(*base, cwd=tmp_path, timeout=600)
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    trials = study.get_trials(deepcopy=False)
    assert not [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    counted = [t for t in trials if ATTR_RETIRED not in t.system_attrs]
    assert len(counted) == 24 and all(t.state.name == "COMPLETE" for t in counted), \
        [(t.number, t.state.name) for t in trials]


# ---- journal files: whole lines or nothing -----------------------------------------------------------

def test_journal_torn_last_line_is_cut_before_the_next_append(tmp_path):
    """A writer killed mid-append (or a failed cut-back) leaves a line without its newline: the next append
    cuts it, instead of gluing its record onto it (which makes every later read fail)."""
    url = _url("journal", tmp_path, None)
    study = _grid_study(url, "torn", 2)
    log = Path(url[len("journal:"):])
    whole = log.read_bytes()
    with log.open("ab") as f:
        f.write(b'{"op_code":5,"worker_id":"dead","trial_id":0,"sta')  # torn: no newline
    again = optuna.load_study(study_name="torn", storage=open_storage(url))
    again.set_user_attr("after", 1)
    assert log.read_bytes().startswith(whole) and log.read_bytes().endswith(b"\n")
    fresh = optuna.load_study(study_name="torn", storage=open_storage(url))
    assert fresh.user_attrs["after"] == 1 and len(fresh.get_trials(deepcopy=False)) == 2
    assert study.get_trials(deepcopy=False)[0].state.name == "WAITING"


def test_journal_append_that_fails_part_way_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    """A full disk refuses an append after part of it was written: the part is cut back (the storage error
    propagates), and the journal stays readable and appendable."""
    import errno

    from edmbench.study import storage

    url = _url("journal", tmp_path, None)
    study = _grid_study(url, "full", 2)
    log = Path(url[len("journal:"):])
    before = log.read_bytes()
    real_write, calls = os.write, []

    def full_disk(fd: int, data) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        study.set_user_attr("lost", "x" * 200)
    monkeypatch.undo()
    assert len(calls) == 2 and log.read_bytes() == before
    study.set_user_attr("kept", 1)
    fresh = optuna.load_study(study_name="full", storage=open_storage(url))
    assert fresh.user_attrs.get("kept") == 1 and "lost" not in fresh.user_attrs
