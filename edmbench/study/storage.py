"""Optuna storage, sampler and pruner for a spec, and the one-time initialisation of a study.

Storages: any SQLAlchemy URL (``sqlite:///runs/x/study.db`` by default, ``postgresql+psycopg://...`` for many
machines) or ``journal:PATH`` for Optuna's file journal. Initialisation (spec fingerprint, enqueued
settings, every grid point) happens once per study, under a lock that the operating system (files) or the
server (PostgreSQL) releases when its holder dies, and is resumable: a creator stopped at any moment leaves a
study that the next command finishes initialising.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edmbench.study.record import (
    ATTR_ENQUEUE_LABEL,
    ATTR_GRID_INDEX,
    ATTR_RETRY,
    ATTR_RETRY_FOR,
    enqueue_attrs,
    retry_attrs,
)
from edmbench.study.search import make_pruner, make_sampler  # noqa: F401 (re-exported for the runner)
from edmbench.study.space import grid_points
from edmbench.study.spec import StudySpec

ATTR_SPEC_HASH = "edmbench:spec_hash"
ATTR_SPEC_TEXT = "edmbench:spec"
ATTR_READY = "edmbench:initialised"
JOURNAL_PREFIX = "journal:"
SQLITE_BUSY_TIMEOUT_S = 60.0  # how long an SQLite statement waits for another worker's write lock
LOCK_WAIT_S = 300.0  # how long storage_lock waits before it says which lock is held (never a silent hang)
PG_LOCK_TIMEOUT_S = 300.0  # PostgreSQL: the longest one statement waits for a row or table lock


def default_storage_url(spec: StudySpec, runs_dir: str | Path = "runs") -> str:
    return f"sqlite:///{Path(runs_dir) / spec.name / 'study.db'}"


class StorageError(RuntimeError):
    """The study storage cannot be opened or written (corrupt file, full disk, unreachable server)."""


def open_storage(url: str) -> Any:
    """An Optuna storage for ``url``: ``journal:PATH`` or any SQLAlchemy URL.

    Creating a storage's tables is serialised across processes (:func:`storage_lock`), so two commands on a
    brand-new database never race on ``CREATE TABLE``. SQLite transactions begin with ``BEGIN IMMEDIATE``:
    Optuna's read-then-write updates rely on ``SELECT ... FOR UPDATE``, which SQLite ignores; taking the
    write lock at the start of every transaction makes each of them atomic.
    """
    import optuna

    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX):])
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with storage_lock(url):
                return optuna.storages.JournalStorage(_journal_backend(path))
        except ValueError as exc:  # a line that is not a journal record (JSONDecodeError is a ValueError)
            raise StorageError(_unreadable(url, exc)) from None
    if "://" not in url:
        raise ValueError(f"storage {url!r} is not a URL: give e.g. sqlite:///runs/x/study.db, "
                         "postgresql+psycopg://user@host:5432/db or journal:runs/x/journal.log")
    engine_kwargs: dict[str, Any] = {}
    sqlite = url.startswith("sqlite:///")
    if sqlite:
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        # timeout: wait on locks from parallel workers; isolation_level None: edmbench issues BEGIN itself
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "isolation_level": None}}
    else:
        engine_kwargs = {"pool_pre_ping": True, "connect_args": _server_lock_timeout(url)}
    import sqlalchemy.exc

    try:
        with storage_lock(url):
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except (sqlalchemy.exc.DatabaseError, optuna.exceptions.StorageInternalError) as exc:
        raise StorageError(_unreadable(url, exc)) from None
    except RuntimeError as exc:  # Optuna: schema version mismatch, or a table without its version row
        raise StorageError(_unreadable(url, exc)) from None
    if sqlite:
        import sqlalchemy

        sqlalchemy.event.listen(storage.engine, "begin",
                                lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return storage


def _server_lock_timeout(url: str) -> dict[str, Any]:
    """Connection options that bound a server's lock waits. PostgreSQL waits for a row lock (Optuna's
    ``SELECT ... FOR UPDATE``) forever by default (``lock_timeout = 0``); a session that holds one and never
    ends (a stopped process, a forgotten psql) would hang every worker. With ``lock_timeout`` the statement
    fails after ``PG_LOCK_TIMEOUT_S`` and the worker reports a storage error. (MySQL/MariaDB already bound
    it: ``innodb_lock_wait_timeout``, 50 s by default.)"""
    if url.startswith("postgres"):  # postgresql://, postgresql+psycopg://, postgres://
        return {"options": f"-c lock_timeout={int(PG_LOCK_TIMEOUT_S * 1000)}"}
    return {}


def storage_cause(exc: BaseException, limit: int = 200) -> str:
    """The first line of what the database said about a storage failure: the driver's error wrapped by
    SQLAlchemy (``.orig``), found along the ``__cause__`` / ``__context__`` chain (Optuna re-raises it as
    a generic "exception during the commit"), else the exception's own message."""
    seen, e = set(), exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if getattr(e, "orig", None) is not None:
            return (str(e.orig).splitlines() or [""])[0][:limit]
        e = e.__cause__ or e.__context__
    return (str(exc.__cause__ or exc).splitlines() or [""])[0][:limit]


def _unreadable(url: str, exc: BaseException) -> str:
    cause = storage_cause(exc)
    if url.startswith("sqlite:///"):
        return (f"{url[len('sqlite:///'):]} is not a readable study database ({cause}); move it away to "
                "start a new study there, or give --storage another URL")
    if url.startswith(JOURNAL_PREFIX):
        return (f"{url[len(JOURNAL_PREFIX):]} is not a readable study journal ({cause}); move it away to "
                "start a new study there, or give --storage another URL")
    return f"cannot open the study storage {url} ({cause})"


class FlockLock:
    """A journal-file lock held with ``flock``: the kernel releases it when its holder dies, so a worker
    killed while appending never blocks the others (Optuna's symlink/open locks wait out a grace period).

    One descriptor per lock object, locked and unlocked in place: an interrupt that lands between taking the
    lock and the ``try`` that releases it cannot leave a locked descriptor behind, and taking the lock again
    in the same process (the retire after that interrupt) succeeds instead of waiting on itself forever.
    Threads of one process are serialised by ``JournalStorage``'s own thread lock, which every append holds.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = f"{path}.flock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        import fcntl

        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def __del__(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)


def _journal_backend(path: Path) -> Any:
    """Optuna's file journal whose appends are all-or-nothing. A write that fails part-way (full disk:
    ENOSPC, EFBIG) is cut back to where it began, and a torn last line left by an earlier writer (killed
    mid-write, or a failed cut) is cut before the next append: Optuna would otherwise glue the next record
    to it, and every later read of the journal would fail ("Invalid log format")."""
    from edmbench.study._optuna import whole_line_journal_backend

    return whole_line_journal_backend(_append_whole)(str(path), lock_obj=FlockLock(path))


def _append_whole(path: str, data: bytes) -> None:
    """Append ``data`` (whole lines) to ``path`` under the journal lock; on failure leave the file as it was.
    A torn last line (no final newline) is cut first."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        start = _whole_lines_end(fd)
        os.lseek(fd, start, os.SEEK_SET)
        view, written = memoryview(data), 0
        try:
            while written < len(data):
                written += os.write(fd, view[written:])
            os.fsync(fd)  # a full disk may refuse only here (delayed allocation)
        except BaseException as exc:
            if isinstance(exc, OSError) or written < len(data):  # not an interrupt after a whole write
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)  # shrinking a file needs no free space
            raise
    finally:
        os.close(fd)


def _whole_lines_end(fd: int, chunk: int = 1 << 16) -> int:
    """The size of ``fd``'s file up to its last newline, cutting a torn tail off the file if there is one."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:
        block = os.pread(fd, min(chunk, end), end - min(chunk, end))
        cut = block.rfind(b"\n")
        if cut >= 0:
            end = end - len(block) + cut + 1
            break
        end -= len(block)
    if end != size:
        os.ftruncate(fd, end)
    return end


_PG_LOCK_KEY = 0x65646D62656E6368 & 0x7FFFFFFFFFFFFFFF  # "edmbench" as a signed 64-bit advisory-lock key


@contextlib.contextmanager
def storage_lock(url: str, wait_s: float | None = None) -> Iterator[None]:
    """Serialise study creation, initialisation and retry bookkeeping among every process on ``url``.

    SQLite and journal files: ``flock`` on ``PATH.lock``; PostgreSQL: a session advisory lock. Both are
    released by the operating system or the server when the holder dies, so a signal at any moment leaves
    nothing to clean up. Other SQLAlchemy backends run unlocked (initialisation stays idempotent). A lock
    still held by another process after ``wait_s`` seconds (default ``LOCK_WAIT_S``) raises
    :class:`StorageError` naming it, instead of waiting forever."""
    wait_s = LOCK_WAIT_S if wait_s is None else wait_s
    path = _local_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _flock_within(fd, wait_s, f"{path}.lock")
            yield
        finally:
            os.close(fd)
        return
    if url.startswith("postgresql"):
        import sqlalchemy

        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as conn:
                _pg_advisory_lock_within(conn, wait_s, url)
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                    conn.commit()
        finally:
            engine.dispose()
        return
    yield


def _held_too_long(what: str, wait_s: float) -> StorageError:
    return StorageError(f"{what} is still held by another process after {wait_s:g} s; if no other edmbench "
                        "command is using this storage, a stopped process may hold it: end that process "
                        "and re-run the same command")


def _flock_within(fd: int, wait_s: float, name: str) -> None:
    """``flock(fd, LOCK_EX)``, polling (a blocking ``flock`` has no timeout) for at most ``wait_s``."""
    import fcntl
    import time

    deadline, pause = time.monotonic() + wait_s, 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise _held_too_long(f"the study lock {name}", wait_s) from None
            time.sleep(pause)
            pause = min(2 * pause, 0.05)


def _pg_advisory_lock_within(conn: Any, wait_s: float, url: str) -> None:
    """``pg_advisory_lock`` under a ``lock_timeout`` of ``wait_s`` (the server ends the wait)."""
    import sqlalchemy
    import sqlalchemy.exc

    conn.execute(sqlalchemy.text(f"SET lock_timeout = '{max(1, int(wait_s * 1000))}ms'"))
    try:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
    except sqlalchemy.exc.OperationalError as exc:
        if "lock timeout" not in str(exc):
            raise
        raise _held_too_long(f"the study lock (advisory lock {_PG_LOCK_KEY}) of {url}", wait_s) from None
    conn.execute(sqlalchemy.text("SET lock_timeout = 0"))
    conn.commit()


def _local_path(url: str) -> Path | None:
    if url.startswith(JOURNAL_PREFIX):
        return Path(url[len(JOURNAL_PREFIX):])
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    return None


def storage_url(storage: Any) -> str:
    """The URL of an open storage (the key of its :func:`storage_lock`)."""
    from edmbench.study import _optuna

    journal = _optuna.journal_path(storage)
    if journal is not None:
        return JOURNAL_PREFIX + journal
    backend = _optuna.backend_of(storage)
    return backend.url if hasattr(backend, "url") else ""


def directions(spec: StudySpec) -> list[str]:
    from edmbench.study.objectives import get_objective

    return [get_objective(name).direction for name in spec.objectives]


def open_study(spec: StudySpec, storage: Any) -> Any:
    """Create the study and initialise it, or load it; check that it was made from the same spec.

    Creation and initialisation run under :func:`storage_lock` and are idempotent: a creator stopped at any
    moment (signal, kill -9) leaves a study that the next call finishes initialising, and retries that a
    stopped retirer did not enqueue are enqueued here (:func:`enqueue_missing_retries`)."""
    import optuna

    sampler, pruner = make_sampler(spec), make_pruner(spec)
    with storage_lock(storage_url(storage)):
        try:
            study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner)
        except KeyError:
            study = optuna.create_study(study_name=spec.name, storage=storage, directions=directions(spec),
                                        sampler=sampler, pruner=pruner)
        _initialise(study, spec)
        enqueue_missing_retries(study)
    return study


def enqueue_missing_retries(study: Any) -> int:
    """Enqueue the retry of every retired trial that asked for one and has none yet. Call under
    ``storage_lock``; idempotent. Returns the number enqueued."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    done = {t.system_attrs.get(ATTR_RETRY_FOR) for t in trials}
    missing = [t for t in trials if t.state == optuna.trial.TrialState.FAIL and t.system_attrs.get(ATTR_RETRY)
               and t.number not in done]
    for trial in missing:
        params = trial.system_attrs.get("fixed_params", trial.params)
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING, user_attrs=retry_attrs(trial),
            system_attrs={"fixed_params": params, ATTR_RETRY_FOR: trial.number}))
    return len(missing)


def _initialise(study: Any, spec: StudySpec) -> None:
    """Record the spec, enqueue its settings and every grid point, mark the study initialised. Resumable:
    each enqueue is one storage write, and what is already there (by grid index or label) is skipped."""
    import optuna

    attrs = study.user_attrs
    stored = attrs.get(ATTR_SPEC_HASH)
    if stored is not None and stored != spec.spec_hash:
        raise RuntimeError(f"study {spec.name!r} in this storage was created from a different spec "
                           f"(spec sha256 {stored} != {spec.spec_hash}); rename the study or use a new "
                           "storage to start over")
    if attrs.get(ATTR_READY):
        return
    if stored is None:
        study.set_user_attr(ATTR_SPEC_HASH, spec.spec_hash)
    study.set_user_attr(ATTR_SPEC_TEXT, spec.source_text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(spec.objectives))
    existing = study.get_trials(deepcopy=False)
    have_grid = {t.user_attrs.get(ATTR_GRID_INDEX) for t in existing} - {None}
    have_labels = {t.user_attrs.get(ATTR_ENQUEUE_LABEL) for t in existing} - {None}
    is_grid = spec.search.sampler == "grid"
    grid = list(grid_points(spec.space, spec.fixed, spec.constraints)) if is_grid else []
    labels = {}
    for item in spec.enqueue:  # an enqueued point that is also a grid point is run once, with its label
        if item.params in grid:
            labels[grid.index(item.params)] = item.label
        elif item.label not in have_labels:
            study.enqueue_trial(item.params, user_attrs=enqueue_attrs(label=item.label))
    for index, point in enumerate(grid):
        if index not in have_grid:
            study.enqueue_trial(point, user_attrs=enqueue_attrs(label=labels.get(index), grid_index=index))
    study.set_user_attr(ATTR_READY, True)
