"""Every use of Optuna's private API in edmbench, in one module, each with the reason it is needed.

Why any private API at all: the runner needs three guarantees that Optuna 5.0's public API does not give on
every storage edmbench supports (SQLite, PostgreSQL, JournalStorage files):

1. **Heartbeats on every storage.** Optuna's own heartbeat exists for ``RDBStorage`` only; JournalStorage has
   none. The runner keeps its own heartbeat as a trial system attr, which needs the trial's storage id.
2. **Exactly-once claims.** Optuna's ``WAITING -> RUNNING`` transition relies on ``SELECT ... FOR UPDATE``,
   which SQLite ignores: two workers can pop the same grid point. The claim here is a conditional
   ``UPDATE ... WHERE state = 'WAITING'`` checked by its row count (atomic on SQLite and PostgreSQL alike);
   JournalStorage's own claim is already decided by the order of the log.
3. **Atomic retirement.** Retiring a dead worker's trial (state FAIL plus the edmbench attrs that say why
   and whether it wants a retry) must happen all at once or not at all, and never overwrite a trial its
   owner has just finished: one transaction with ``UPDATE ... WHERE state = 'RUNNING'`` on RDB storages, one
   contiguous append of log records on journal files.
4. **Whole-line journal appends.** ``JournalFileBackend.append_logs`` writes with a plain append; a full disk
   can leave half a record that breaks every later read. The subclass here hands the encoded lines to an
   all-or-nothing writer (``storage._append_whole``) under the backend's own lock.

``pyproject.toml`` pins Optuna to the tested range (``tests/study/test_optuna_surface.py`` fails loudly on
any other version): these internals are re-checked whenever that range moves.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

TESTED_OPTUNA = ("5.0", "5.1")  # [lower, upper): the Optuna versions this module was written and tested for


def storage_of(study: Any) -> Any:
    """The storage behind a study (``Study._storage``; Optuna has no public getter)."""
    return study._storage


def backend_of(storage: Any) -> Any:
    """The RDBStorage under Optuna's ``_CachedStorage`` wrapper, else the storage itself."""
    return getattr(storage, "_backend", storage) if type(storage).__name__ == "_CachedStorage" else storage


def trial_id(trial: Any) -> int:
    """The storage id of a live or frozen trial (``_trial_id``; the public ``number`` is per study)."""
    return trial._trial_id


def live_trial(study: Any, tid: int) -> Any:
    """An ``optuna.Trial`` for an already claimed trial id (the constructor is documented as internal)."""
    import optuna

    return optuna.Trial(study, tid)


def frozen_trial(study: Any, tid: int) -> Any:
    return storage_of(study).get_trial(tid)


def set_system_attr(study: Any, tid: int, key: str, value: Any) -> None:
    """A trial system attr (there is no public setter for system attrs of a trial)."""
    storage_of(study).set_trial_system_attr(tid, key, value)


def is_rdb(storage: Any) -> bool:
    import optuna

    return isinstance(backend_of(storage), optuna.storages.RDBStorage)


def journal_path(storage: Any) -> str | None:
    """The file of a JournalStorage on a file backend (``_backend._file_path``), else None."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if isinstance(storage, optuna.storages.JournalStorage) and isinstance(storage._backend,
                                                                          JournalFileBackend):
        return storage._backend._file_path
    return None


# ---- RDB: conditional updates ------------------------------------------------------------------------

def _rdb_models() -> Any:
    from optuna.storages._rdb import models

    return models


def claim_waiting(study: Any, tid: int) -> bool:
    """Atomically move one WAITING trial to RUNNING; True for exactly one caller per trial."""
    import optuna

    storage = storage_of(study)
    if not is_rdb(storage):  # JournalStorage: the log order decides, and the storage reports the winner
        try:
            return storage.set_trial_state_values(tid, optuna.trial.TrialState.RUNNING)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
    import sqlalchemy

    m = _rdb_models()
    state = optuna.trial.TrialState
    with backend_of(storage).engine.begin() as conn:
        result = conn.execute(sqlalchemy.update(m.TrialModel)
                              .where(m.TrialModel.trial_id == tid, m.TrialModel.state == state.WAITING)
                              .values(state=state.RUNNING, datetime_start=datetime.now()))
        return result.rowcount == 1


def retire_running(study: Any, tid: int, attrs: dict[str, Any]) -> bool:
    """Atomically: if the trial is still RUNNING, set it FAIL together with the system ``attrs``. True when
    this call made the transition (exactly one of several concurrent retirers, and never over a trial its
    owner finished first)."""
    storage = storage_of(study)
    if is_rdb(storage):
        return _rdb_retire(backend_of(storage), tid, attrs)
    return _journal_retire(storage, tid, attrs)


def _rdb_retire(backend: Any, tid: int, attrs: dict[str, Any]) -> bool:
    import json

    import optuna
    import sqlalchemy

    m = _rdb_models()
    state = optuna.trial.TrialState
    attr_table = m.TrialSystemAttributeModel
    with backend.engine.begin() as conn:  # one transaction: the FAIL and the attrs commit together
        result = conn.execute(sqlalchemy.update(m.TrialModel)
                              .where(m.TrialModel.trial_id == tid, m.TrialModel.state == state.RUNNING)
                              .values(state=state.FAIL, datetime_complete=datetime.now()))
        if result.rowcount != 1:
            return False
        for key, value in attrs.items():
            conn.execute(sqlalchemy.delete(attr_table).where(attr_table.trial_id == tid,
                                                             attr_table.key == key))
            conn.execute(sqlalchemy.insert(attr_table).values(trial_id=tid, key=key,
                                                              value_json=json.dumps(value)))
    return True


_TOKEN = "edmbench:retire_token"


def _journal_retire(storage: Any, tid: int, attrs: dict[str, Any]) -> bool:
    """The attrs and the FAIL as one contiguous append (``_backend.append_logs``): replay applies all of them
    if the trial is still running when the first is read, else none. They are written under a worker id of
    their own so that a lost race is skipped silently by every reader, and the winner is told by a token."""
    import optuna
    from optuna.storages.journal._storage import JournalOperation

    token = uuid.uuid4().hex
    worker = f"edmbench-retire-{token}"
    logs = [{"op_code": JournalOperation.SET_TRIAL_SYSTEM_ATTR, "worker_id": worker, "trial_id": tid,
             "system_attr": {key: value}} for key, value in {_TOKEN: token, **attrs}.items()]
    logs.append({"op_code": JournalOperation.SET_TRIAL_STATE_VALUES, "worker_id": worker, "trial_id": tid,
                 "state": optuna.trial.TrialState.FAIL, "values": None,
                 "datetime_complete": datetime.now(tz=UTC).isoformat(timespec="microseconds")})
    with storage._thread_lock:
        storage._backend.append_logs(logs)
        storage._sync_with_backend()
    trial = storage.get_trial(tid)
    return trial.state == optuna.trial.TrialState.FAIL and trial.system_attrs.get(_TOKEN) == token


# ---- samplers ----------------------------------------------------------------------------------------

def study_sampler_seeded(study: Any, sampler: Any) -> None:
    """Give the study a freshly seeded sampler (``Study.sampler`` is a plain attribute; Optuna's samplers keep
    their random state inside, so a new object is the public way to reseed deterministically)."""
    study.sampler = sampler


@functools.cache
def whole_line_journal_backend(append: Callable[[str, bytes], None]) -> type:
    """A ``JournalFileBackend`` whose ``append_logs`` passes the encoded lines to ``append(path, data)``
    under the backend's lock (private: ``_lock``, ``_file_path``). The lock must tolerate a release that
    follows an interrupted acquire (``storage.FlockLock`` does)."""
    from optuna.storages.journal import JournalFileBackend

    class WholeLineJournalBackend(JournalFileBackend):
        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
            try:  # acquire inside: an interrupt right after the lock is taken still releases it
                self._lock.acquire()
                append(self._file_path, data)
            finally:
                self._lock.release()

    return WholeLineJournalBackend
