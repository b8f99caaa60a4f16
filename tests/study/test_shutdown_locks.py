"""Stopping a study while its storage is locked: the run ends as the interrupt it is (never as a "database is
locked" failure), and no lock wait is unbounded or can wait on its own process.

Locks are held for real (an exclusive SQLite transaction from a second connection, a ``flock`` on another
descriptor, a PostgreSQL advisory lock from another session) and signals are raised in the process
(``signal.raise_signal``), so each case is deterministic: no sleeps, no races.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import sys
from pathlib import Path

import optuna
import pytest

from edmbench.study import _optuna, runner, storage
from edmbench.study.record import ATTR_GRID_INDEX, ATTR_RETIRED
from edmbench.study.spec import parse_spec

sys.path.insert(0, str(Path(__file__).parent))
from conftest import spec_text  # noqa: E402
from test_exactly_once import GRID_SPACE, N_GRID, NO_PRUNING  # noqa: E402


def _grid_spec(assets):
    return parse_spec(spec_text(assets, "locked", space=GRID_SPACE, search='sampler = "grid"', num_images=16,
                                rungs="[8]", extra=NO_PRUNING))


def _options(url: str, **kw) -> runner.RunOptions:
    base = {"storage": url, "progress": False, "heartbeat_s": 30.0, "grace_s": 60.0}
    return runner.RunOptions(**{**base, **kw})


def _use_evaluator(monkeypatch, evaluator) -> None:
    monkeypatch.setattr(runner, "load_factory", lambda path: lambda spec, **kw: evaluator)


def _states(url: str) -> list[str]:
    study = optuna.load_study(study_name="locked", storage=storage.open_storage(url))
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def _exactly_once(url: str) -> None:
    study = optuna.load_study(study_name="locked", storage=storage.open_storage(url))
    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if ATTR_RETIRED not in t.system_attrs]
    assert all(t.state.name == "COMPLETE" for t in counted), [(t.number, t.state.name) for t in trials]
    assert sorted(t.user_attrs[ATTR_GRID_INDEX] for t in counted) == list(range(N_GRID))


@pytest.fixture
def sqlite_locked(tmp_path, monkeypatch):
    """(url, lock, unlock): ``lock()`` takes an exclusive SQLite lock on the study database from a second
    connection; the storage's statements then give up after 0.2 s ("database is locked")."""
    monkeypatch.setattr(storage, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    db = tmp_path / "study.db"
    blocker: list[sqlite3.Connection] = []

    def lock() -> None:
        conn = sqlite3.connect(db, isolation_level=None, timeout=30)
        conn.execute("BEGIN EXCLUSIVE")
        blocker.append(conn)

    def unlock() -> None:
        while blocker:
            conn = blocker.pop()
            conn.execute("ROLLBACK")
            conn.close()

    yield f"sqlite:///{db}", lock, unlock
    unlock()


def test_sigterm_while_the_database_is_locked_ends_as_an_interrupt(assets, monkeypatch, caplog,
                                                                   sqlite_locked):
    """SIGTERM during a trial while another connection holds the database: the retire cannot be written
    ("database is locked"); the run still ends with KeyboardInterrupt (exit 130), the trial stays RUNNING,
    and the next run retries it once its heartbeat is stale: every grid point once."""
    url, lock, unlock = sqlite_locked
    spec = _grid_spec(assets)

    def evaluator(trial, progress):
        if trial.number == 2:
            lock()
            signal.raise_signal(signal.SIGTERM)
        return 1.0

    _use_evaluator(monkeypatch, evaluator)
    with pytest.raises(KeyboardInterrupt), caplog.at_level("WARNING", logger="edmbench.study"):
        runner.run_study(spec, _options(url))
    assert "trial 2 could not be retired after the interrupt (database is locked)" in caplog.text
    unlock()
    assert _states(url)[:3] == ["COMPLETE", "COMPLETE", "RUNNING"]
    _use_evaluator(monkeypatch, lambda trial, progress: 1.0)
    runner.run_study(spec, _options(url, grace_s=0.0))
    _exactly_once(url)



def test_interrupt_that_leaves_a_cursor_mid_statement_does_not_block_its_own_retire(assets, monkeypatch,
                                                                                      sqlite_locked):
    """The interrupt lands between a SELECT's execute and its last row (as SIGTERM at "half" did in the
    fault matrix): the cursor, held by a frame of the interrupt's traceback, keeps a SQLite read lock that
    blocked the retire's commit until "database is locked" (60 s). The retire now runs once that traceback is
    gone: the trial is retired at once and its retry enqueued."""
    url, _, _ = sqlite_locked
    spec = _grid_spec(assets)

    def evaluator(trial, progress):
        if trial.number == 2:
            engine = _optuna.backend_of(_optuna.storage_of(trial.study)).engine
            cursor = engine.raw_connection().cursor()
            cursor.execute("SELECT trial_id FROM trials")  # one row stepped: the statement stays active
            interrupt = KeyboardInterrupt()  # the frame refers to its own traceback: a reference cycle
            raise interrupt
        return 1.0

    _use_evaluator(monkeypatch, evaluator)
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(spec, _options(url))
    study = optuna.load_study(study_name="locked", storage=storage.open_storage(url))
    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials[:3]] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert trials[2].system_attrs[ATTR_RETIRED] == "interrupted by the user"
    assert trials[-1].state.name == "WAITING" and trials[-1].user_attrs[ATTR_GRID_INDEX] == 2


def test_an_interrupted_trial_does_not_wait_for_a_heartbeat_in_flight(monkeypatch):
    """The heartbeat thread is inside a storage write when the trial is interrupted: leaving the trial does
    not wait for it (that write may wait on a lock the interrupted frames hold: a +60 s stop on SQLite)."""
    import threading

    in_flight, release, finished, calls = threading.Event(), threading.Event(), threading.Event(), []

    def set_system_attr(study, tid, key, value):
        calls.append(value)
        if len(calls) == 2:  # the thread's first beat stays in flight until released
            in_flight.set()
            release.wait(60)
            finished.set()

    monkeypatch.setattr(runner._optuna, "set_system_attr", set_system_attr)
    with pytest.raises(KeyboardInterrupt), runner.heartbeat(None, 1, every_s=0.001):
        in_flight.wait(60)
        raise KeyboardInterrupt
    assert in_flight.is_set() and not finished.is_set()  # left while the beat was still in flight
    release.set()

@pytest.mark.parametrize("signalled", [True, False])
def test_a_storage_error_after_the_interrupt_is_the_interrupt(assets, monkeypatch, sqlite_locked, signalled):
    """The signal arrives between trials and the storage statement it interrupts fails on the lock (the
    error replaces the KeyboardInterrupt): the run ends as the interrupt. Without a signal, the same lock
    error is the storage failure it is."""
    url, lock, unlock = sqlite_locked
    spec = _grid_spec(assets)
    real_next_trial, calls = runner.next_trial, []

    def next_trial(study, spec, n_trials):
        calls.append(1)
        if len(calls) < 3:
            return real_next_trial(study, spec, n_trials)
        lock()
        try:
            if signalled:
                signal.raise_signal(signal.SIGTERM)
        finally:
            real_next_trial(study, spec, n_trials)  # "database is locked"

    _use_evaluator(monkeypatch, lambda trial, progress: 1.0)
    monkeypatch.setattr(runner, "next_trial", next_trial)
    with pytest.raises(BaseException) as info:
        runner.run_study(spec, _options(url))
    unlock()
    if signalled:
        assert info.type is KeyboardInterrupt and runner.is_storage_error(info.value.__cause__)
        assert "database is locked" in runner._first_line(info.value.__cause__)
    else:
        assert info.type is not KeyboardInterrupt and runner.is_storage_error(info.value)
    assert _states(url).count("COMPLETE") == 2 and "RUNNING" not in _states(url)


# ---- journal files: a lock taken by an interrupted append --------------------------------------------

def _free_for_another_process(lock_file: Path) -> bool:
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_journal_append_interrupted_under_its_lock_releases_it(tmp_path, monkeypatch):
    """An interrupt while an append holds the journal lock: the lock is free afterwards, for the other
    processes and for this one's retire (which used to wait on its own lock forever)."""
    url = f"journal:{tmp_path / 'journal.log'}"
    optuna.create_study(study_name="j", storage=storage.open_storage(url))
    real_append, hits = storage._append_whole, []

    def interrupted_once(path: str, data: bytes) -> None:
        hits.append(1)
        if len(hits) == 1:
            raise KeyboardInterrupt
        real_append(path, data)

    monkeypatch.setattr(storage, "_append_whole", interrupted_once)
    study = optuna.load_study(study_name="j", storage=storage.open_storage(url))
    with pytest.raises(KeyboardInterrupt):
        study.set_user_attr("lost", 1)
    assert _free_for_another_process(tmp_path / "journal.log.flock")
    study.set_user_attr("kept", 2)
    assert optuna.load_study(study_name="j", storage=storage.open_storage(url)).user_attrs == {"kept": 2}


def test_journal_lock_left_taken_in_this_process_does_not_wait_on_itself(tmp_path):
    """An interrupt inside ``acquire`` (after the kernel granted the lock) leaves it taken: the next append
    of the same process takes it again at once and releases it for everyone."""
    url = f"journal:{tmp_path / 'journal.log'}"
    study = optuna.create_study(study_name="j", storage=storage.open_storage(url))
    lock = _optuna.storage_of(study)._backend._lock
    lock.acquire()  # as if interrupted before the append that would release it
    assert not _free_for_another_process(tmp_path / "journal.log.flock")
    study.set_user_attr("after", 1)  # the old lock (a new descriptor per acquire) waited here forever
    assert _free_for_another_process(tmp_path / "journal.log.flock")


# ---- storage_lock: bounded waits with a clear error ------------------------------------------------

@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_study_lock_held_elsewhere_is_a_clear_error_not_a_hang(tmp_path, kind):
    url = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'journal.log'}"
    lock_file = tmp_path / ("study.db.lock" if kind == "sqlite" else "journal.log.lock")
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process (another open file description) holds it
        with pytest.raises(storage.StorageError, match="still held by another process after 0.05 s"), \
                storage.storage_lock(url, wait_s=0.05):
            pass
    finally:
        os.close(fd)
    with storage.storage_lock(url, wait_s=0.05):
        pass


def test_storage_error_prints_as_its_message():
    from edmbench.errors import one_line

    assert one_line(storage.StorageError("the study storage X is locked")) == "the study storage X is locked"
    assert one_line(RuntimeError("spec mismatch")) == "RuntimeError: spec mismatch"  # not ours: type named


@pytest.mark.postgres
def test_postgres_study_lock_held_elsewhere_is_a_clear_error_not_a_hang(postgres_url):
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as other:
            other.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": storage._PG_LOCK_KEY})
            other.commit()
            with pytest.raises(storage.StorageError, match="still held by another process after 0.2 s"), \
                    storage.storage_lock(postgres_url, wait_s=0.2):
                pass
            other.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": storage._PG_LOCK_KEY})
            other.commit()
        with storage.storage_lock(postgres_url, wait_s=0.2):
            pass
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_row_lock_held_elsewhere_fails_instead_of_waiting_forever(postgres_url, monkeypatch):
    """A session that holds a trial's row lock and never ends: Optuna's SELECT ... FOR UPDATE of that row
    fails after the storage's lock_timeout instead of waiting forever."""
    import sqlalchemy

    monkeypatch.setattr(storage, "PG_LOCK_TIMEOUT_S", 0.3)
    db = storage.open_storage(postgres_url)
    study = optuna.create_study(storage=db, study_name=f"row-lock-{os.getpid()}-{id(db)}")
    trial_id = study.ask()._trial_id
    engine = sqlalchemy.create_engine(postgres_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as other:  # holds the row lock until rolled back
            lock = sqlalchemy.text("SELECT * FROM trials WHERE trial_id = :t FOR UPDATE")
            other.execute(lock, {"t": trial_id})
            with pytest.raises(Exception) as failed:
                db.set_trial_state_values(trial_id, optuna.trial.TrialState.COMPLETE, [1.0])
            assert "lock timeout" in storage.storage_cause(failed.value)  # what the user is told
            other.rollback()
        db.set_trial_state_values(trial_id, optuna.trial.TrialState.COMPLETE, [1.0])  # free again
        assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
    finally:
        engine.dispose()
        optuna.delete_study(study_name=study.study_name, storage=db)
        db.engine.dispose()
