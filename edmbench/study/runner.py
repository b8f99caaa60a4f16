"""Run a study: worker loops over a shared storage, resume after crashes, grid points exactly once.

Design (``docs/studies.md``, "Workers, resume and crashes"):

- Every running trial carries a heartbeat (trial system attr ``edmbench:heartbeat``, wall-clock seconds)
  refreshed by a thread every ``heartbeat_s``. It works the same on SQLite, PostgreSQL and journal files.
- A RUNNING trial whose heartbeat is older than ``grace_s`` belongs to a dead worker: any worker retires it.
  Retiring is one atomic step (``_optuna.retire_running``: state FAIL with the system attrs
  ``edmbench:retired`` = reason and ``edmbench:retry``), won by exactly one retirer and never over a trial
  its owner finished first. The retry (same parameters, system attr ``edmbench:retry_for`` = the retired
  trial's number) is enqueued afterwards under the storage lock by :func:`enqueue_missing_retries`, which
  also runs whenever a study is opened: a retirer stopped between the two steps loses no retry, and no
  retry is enqueued twice.
- Grid studies enqueue every grid point once at creation (``storage.open_study``); workers only claim WAITING
  trials (``_optuna.claim_waiting``: a conditional update, atomic on SQLite too) and never ask the sampler.
- The budget counts trials that are not retired. A worker starts a sampled trial only while that count is
  below ``n_trials``; a trial started concurrently beyond the budget is retired without retry.
- Every sampled trial gets a sampler seeded from (``[search] seed``, trial number): reproducible with one
  worker, and parallel workers (or a resumed run) never replay each other's random start-up points.
- Signals: the first SIGINT/SIGTERM becomes ``KeyboardInterrupt``; later ones are ignored while the trial is
  retired. Worker processes ignore the terminal's SIGINT; the parent forwards one SIGTERM to each.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import importlib.util
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from edmbench.study import _optuna
from edmbench.study import progress as bars
from edmbench.study.record import (
    ATTR_HEARTBEAT,
    ATTR_RETIRED,
    ATTR_RETRY,
    TrialRecord,
)
from edmbench.study.spec import StudySpec, parse_spec
from edmbench.study.storage import (
    StorageError,
    default_storage_url,
    enqueue_missing_retries,
    make_sampler,
    open_storage,
    open_study,
    storage_cause,
    storage_lock,
    storage_url,
)

DEFAULT_EVALUATOR = "edmbench.study.objective:make_evaluator"
_log = logging.getLogger("edmbench.study")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Runtime knobs (CLI flags), never part of the science in the spec."""

    storage: str | None = None          # default: sqlite:///<runs_dir>/<study>/study.db
    runs_dir: str = "runs"
    n_trials: int | None = None         # overrides [budget] n_trials
    timeout_s: float | None = None      # overrides [budget] timeout_s
    workers: int = 1
    device: str = "cpu"
    batch_size: int = 64
    heartbeat_s: float = 10.0
    grace_s: float = 60.0
    progress: bool = True
    evaluator: str = DEFAULT_EVALUATOR  # "module:factory" or "path/file.py:factory"
    threads: int | None = None          # torch intra-op threads per worker process (None: leave as is)

    def storage_url(self, spec: StudySpec) -> str:
        return self.storage or default_storage_url(spec, self.runs_dir)


def n_trials_for(spec: StudySpec, options: RunOptions) -> int | None:
    """The trial budget: CLI flag, else ``[budget] n_trials``; grid studies run their points."""
    return options.n_trials if options.n_trials is not None else spec.budget.n_trials


def load_factory(path: str) -> Callable[..., Any]:
    """Import ``module:name`` or ``file.py:name`` (an evaluator factory)."""
    module_name, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"evaluator {path!r} must look like 'package.module:factory'")
    if module_name.endswith(".py"):
        loader_spec = importlib.util.spec_from_file_location("_edmbench_evaluator", module_name)
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    return getattr(module, attr)


# ---- trial bookkeeping ---------------------------------------------------------------------------------

def is_retired(trial: Any) -> bool:
    return ATTR_RETIRED in trial.system_attrs


def budget_used(study: Any) -> int:
    """Trials that count against the budget: every trial that is not retired (incl. running, waiting)."""
    return sum(not is_retired(t) for t in study.get_trials(deepcopy=False))


def _last_beat(trial: Any) -> float:
    beat = trial.system_attrs.get(ATTR_HEARTBEAT)
    return float(beat) if beat is not None else trial.datetime_start.timestamp()


def retire(study: Any, trial: Any, reason: str, *, retry: bool) -> bool:
    """Retire a RUNNING trial (FAIL, does not count) and see its retry enqueued. False when the trial had
    already finished or another process retired it first."""
    if not _optuna.retire_running(study, _optuna.trial_id(trial), {ATTR_RETIRED: reason, ATTR_RETRY: retry}):
        return False
    _log.warning("trial %d retired (%s)%s", trial.number, reason, "; retry enqueued" if retry else "")
    if retry:
        with storage_lock(storage_url(_optuna.storage_of(study))):
            enqueue_missing_retries(study)
    return True


def retire_stale(study: Any, grace_s: float) -> int:
    """Retire (and retry) every RUNNING trial whose heartbeat is older than ``grace_s`` seconds."""
    import optuna

    now, count = time.time(), 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if now - _last_beat(trial) > grace_s:
            count += retire(study, trial, f"interrupted: no heartbeat for {grace_s:g} s (worker died)",
                            retry=True)
    return count


def _claim_waiting(study: Any) -> int | None:
    """Claim one WAITING trial (exactly one claimer wins each)."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        if _optuna.claim_waiting(study, _optuna.trial_id(trial)):
            return _optuna.trial_id(trial)
    return None


def trial_seed(seed: int | None, number: int) -> int | None:
    """The sampler seed of trial ``number``: distinct per trial, reproducible from ``[search] seed``."""
    if seed is None:
        return None
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _ask(study: Any, spec: StudySpec) -> Any:
    """``study.ask()`` with the sampler seeded for the trial's number (see the module docstring)."""
    guess = len(study.get_trials(deepcopy=False))
    _optuna.study_sampler_seeded(study, make_sampler(spec, seed=trial_seed(spec.search.seed, guess)))
    trial = study.ask()
    if trial.number != guess:  # another worker created a trial meanwhile; suggestions use the right seed
        _optuna.study_sampler_seeded(study, make_sampler(spec, seed=trial_seed(spec.search.seed,
                                                                               trial.number)))
    return trial


def next_trial(study: Any, spec: StudySpec, n_trials: int | None) -> Any | None:
    """The next trial to evaluate (enqueued first), or None when there is nothing left to start."""
    tid = _claim_waiting(study)
    if tid is not None:
        return _optuna.live_trial(study, tid)
    if spec.search.sampler == "grid" or (n_trials is not None and budget_used(study) >= n_trials):
        return None
    trial = _ask(study, spec)
    if n_trials is not None:
        earlier = [t for t in study.get_trials(deepcopy=False) if t.number <= trial.number]
        if sum(not is_retired(t) for t in earlier) > n_trials:
            retire(study, trial, "over budget: started concurrently with the last trial of the budget",
                   retry=False)
            return None
    return trial


@contextmanager
def heartbeat(study: Any, tid: int, every_s: float) -> Iterator[None]:
    """Refresh ``edmbench:heartbeat`` on the trial every ``every_s`` seconds while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                _optuna.set_system_attr(study, tid, ATTR_HEARTBEAT, time.time())
            except Exception:  # the trial finished or was retired meanwhile; nothing left to keep alive
                return

    _optuna.set_system_attr(study, tid, ATTR_HEARTBEAT, time.time())
    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{tid}")
    thread.start()
    try:
        yield
    except BaseException:
        # an interrupt or a failure: do not wait for a beat in flight, which may be waiting on a lock that
        # the interrupted frames still hold (SQLite: a read lock blocks its commit for the busy timeout);
        # a late beat on a finished trial is refused and ends the thread
        stop.set()
        raise
    stop.set()
    thread.join()


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)  # a journal append on a full or read-only disk


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the storage itself failed (full disk, lost server), not the trial."""
    import optuna
    import sqlalchemy.exc

    return isinstance(exc, optuna.exceptions.StorageInternalError | sqlalchemy.exc.OperationalError
                      | StorageError) or (isinstance(exc, OSError) and exc.errno in _FULL)


def is_shard_error(exc: BaseException) -> bool:
    """Whether a rank of a sharded evaluation died or timed out (the study cannot go on without it)."""
    from edmbench.metrics.shard import ShardError  # numpy only: imported once an error is judged

    return isinstance(exc, ShardError)


def evaluate(study: Any, trial: Any, evaluator: Callable[..., Any], options: RunOptions,
             progress: bars.TrialBar) -> str:
    """Run one trial to a final state; returns that state's name, or ``RETIRED`` when another process
    retired it meanwhile (its retry stands; this result is dropped). KeyboardInterrupt and storage
    failures propagate (the caller retires the trial)."""
    import optuna

    tid = _optuna.trial_id(trial)
    with heartbeat(study, tid, options.heartbeat_s):
        try:
            values = evaluator(trial, progress)
            state, reason = optuna.trial.TrialState.COMPLETE, None
        except optuna.TrialPruned:
            values, state, reason = None, optuna.trial.TrialState.PRUNED, None
        except Exception as exc:  # a failed trial is recorded with its reason and the study goes on
            if is_storage_error(exc) or is_shard_error(exc):
                raise
            values, state, reason = None, optuna.trial.TrialState.FAIL, f"{type(exc).__name__}: {exc}"
        try:
            if _optuna.frozen_trial(study, tid).state.is_finished():
                raise optuna.exceptions.UpdateFinishedTrialError("retired meanwhile")
            if reason is not None:
                TrialRecord(fail_reason=reason).write(trial)
            study.tell(trial, values, state=state, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
        if is_retired(_optuna.frozen_trial(study, tid)):
            _log.warning("trial %d was retired by another worker meanwhile; its result is dropped and "
                         "its retry stands", trial.number)
            return "RETIRED"
    if reason is not None:
        _log.warning("trial %d failed: %s", trial.number, reason)
    return state.name


_interrupted = threading.Event()  # set by interrupt_once's handler: this process is shutting down


def interrupt_once(*signums: int) -> dict[int, Any]:
    """Turn the first of ``signums`` into ``KeyboardInterrupt``; ignore every later one, so a second signal
    (the terminal's and a forwarded one, or an impatient user) cannot land inside the retire step.
    Returns the previous handlers (for :func:`restore_handlers`)."""

    def handler(signum: int, frame: Any) -> None:
        for s in signums:
            signal.signal(s, signal.SIG_IGN)
        _interrupted.set()
        raise KeyboardInterrupt

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for s in signums:
            if signal.getsignal(s) is not signal.SIG_IGN:
                previous[s] = signal.signal(s, handler)
    return previous


def restore_handlers(previous: dict[int, Any]) -> None:
    for s, handler in previous.items():
        signal.signal(s, handler)


@contextmanager
def interrupt_wins() -> Iterator[None]:
    """After a signal was received, any error that ends the run is the interrupt's: a storage statement the
    signal cut short, or one that timed out on a lock while the workers were stopping ("database is
    locked"), ends the run as an interrupt (exit 130) and not as a failure. The storage is consistent
    whatever that statement was (every transition is atomic), and a trial left RUNNING is retried once its
    heartbeat is stale."""
    try:
        yield
    except Exception as exc:
        if not _interrupted.is_set():
            raise
        _log.warning("stopping after the interrupt: %s", _first_line(exc))
        raise KeyboardInterrupt from exc


def _first_line(exc: BaseException) -> str:
    """The cause of ``exc`` in one short line (the driver's message for a SQLAlchemy error)."""
    cause = getattr(exc, "orig", None) or exc.__cause__ or exc  # Optuna wraps SQLAlchemy's error
    text = str(getattr(cause, "orig", None) or cause)
    return text.splitlines()[0][:200] if text else type(exc).__name__


def worker_loop(spec: StudySpec, options: RunOptions, worker_id: int = 0,
                storage: Any = None, evaluator: Callable[..., Any] | None = None) -> dict[str, int]:
    """Evaluate trials until the budget, the grid or the time is used up. Returns counts by state.
    ``evaluator``: a ready one (rank 0 of a sharded study), else made by ``options.evaluator``."""
    study = open_study(spec, storage or open_storage(options.storage_url(spec)))
    if evaluator is None:
        factory = load_factory(options.evaluator)
        evaluator = factory(spec, device=options.device, batch_size=options.batch_size, worker_id=worker_id)
    n_trials = n_trials_for(spec, options)
    timeout = options.timeout_s if options.timeout_s is not None else spec.budget.timeout_s
    deadline = time.monotonic() + timeout if timeout else None
    counts: dict[str, int] = {}
    with bars.study_bar(study, n_trials, enabled=options.progress and worker_id == 0) as study_progress:
        while deadline is None or time.monotonic() < deadline:
            retire_stale(study, options.grace_s)
            trial = next_trial(study, spec, n_trials)
            if trial is None:
                if _others_running(study):
                    time.sleep(min(options.heartbeat_s, 1.0))  # a dead worker's trial may still need a retry
                    continue
                with storage_lock(storage_url(_optuna.storage_of(study))):
                    if not enqueue_missing_retries(study):
                        break
                continue
            state = _run_one(study, trial, evaluator, spec, options, worker_id)
            counts[state] = counts.get(state, 0) + 1
            study_progress.refresh_from(study)
    return counts


def _run_one(study: Any, trial: Any, evaluator: Callable[..., Any], spec: StudySpec, options: RunOptions,
             worker_id: int) -> str:
    """Evaluate one claimed trial; an interrupt or a storage failure retires it (with a retry) first."""
    try:
        with bars.trial_bar(trial.number, spec.metric.num_images, worker_id,
                            enabled=options.progress) as progress:
            return evaluate(study, trial, evaluator, options, progress)
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: retry this trial when the study is resumed
        pass  # retired below, once the interrupt's traceback (and what its frames hold) is gone
    except Exception as exc:
        if is_shard_error(exc):  # a rank died: retry this trial when the study is re-run
            retire(study, trial, f"interrupted: {str(exc).splitlines()[0][:300]}", retry=True)
            raise
        if not is_storage_error(exc):
            raise
        cause = storage_cause(exc)
        try:
            retire(study, trial, f"interrupted: the storage could not be written ({cause})", retry=True)
            fate = "it was retired and is retried"
        except Exception:
            fate = (f"it stays RUNNING in the storage and is retried ({options.grace_s:g} s without "
                    "heartbeat)")
        raise StorageError(f"the study storage {options.storage_url(spec)} could not be written during "
                           f"trial {trial.number} ({cause}); {fate} when you re-run the same command "
                           "once the storage is writable again") from None
    _retire_interrupted(study, trial, options)
    raise KeyboardInterrupt


def _retire_interrupted(study: Any, trial: Any, options: RunOptions) -> None:
    """Retire an interrupted trial with a retry. The interrupt may have cut a storage statement short
    (psycopg cancels it), so the retire itself can fail: the interrupt still wins (exit 130), and the trial,
    left RUNNING without heartbeat, is retired with its retry by the next run after ``grace_s``."""
    from edmbench.study.workers import release_interrupted_statements

    release_interrupted_statements()
    try:
        retire(study, trial, "interrupted by the user", retry=True)
    except Exception as exc:
        _log.warning("trial %d could not be retired after the interrupt (%s); it stays RUNNING and is "
                     "retried %g s after its last heartbeat when the same command is run again", trial.number,
                     _first_line(exc), options.grace_s)


def _others_running(study: Any) -> bool:
    import optuna

    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))


def _worker_entry(spec_text: str, spec_path: str, options: RunOptions, worker_id: int) -> None:
    """A spawned worker process: SIGINT is ignored (inherited), the parent's SIGTERM stops it once."""
    interrupt_once(signal.SIGTERM)
    spec = parse_spec(spec_text, source=spec_path)
    with suppress(KeyboardInterrupt), interrupt_wins():
        worker_loop(spec, options, worker_id)


def run_study(spec: StudySpec, options: RunOptions) -> dict[str, int]:
    """Initialise the study, then run ``options.workers`` worker loops (processes when more than one).

    Under torchrun (``WORLD_SIZE`` > 1) every trial is sharded over the ranks instead
    (``edmbench.study.distributed``): rank 0 runs the one worker loop; the other ranks score their shares
    and, once rank 0 has finished the trials, exit the process (``SystemExit(0)``), so whatever the
    caller does next (re-scoring, the report) runs on rank 0 alone."""
    _interrupted.clear()
    previous = interrupt_once(signal.SIGINT, signal.SIGTERM)
    try:
        with interrupt_wins():
            return _run(spec, options)
    finally:
        restore_handlers(previous)


def _run(spec: StudySpec, options: RunOptions) -> dict[str, int]:
    from edmbench.study.distributed import shard_from_env

    shard = shard_from_env(options.device)
    if shard is not None:
        return _run_sharded(spec, options, shard)
    storage = open_storage(options.storage_url(spec))
    study = open_study(spec, storage)  # create + enqueue once, before any worker starts
    if options.workers <= 1:
        return worker_loop(spec, options, storage=storage)
    from edmbench.study.workers import run_processes

    return run_processes(_worker_entry, spec, options,
                         lambda opts: worker_loop(spec, opts, worker_id=0, storage=storage),
                         busy=lambda: _others_running(study))


def _run_sharded(spec: StudySpec, options: RunOptions, shard: Any) -> dict[str, int]:
    from edmbench.study.distributed import check_options, run_sharded
    from edmbench.study.objective import make_evaluator

    check_options(options, DEFAULT_EVALUATOR)
    device = shard.device if shard.device.startswith("cuda") else options.device  # cuda:<LOCAL_RANK>
    evaluator = make_evaluator(spec, device=device, batch_size=options.batch_size, shard=shard)

    def lead(evaluator: Callable[..., Any]) -> dict[str, int]:
        storage = open_storage(options.storage_url(spec))
        open_study(spec, storage)
        return worker_loop(spec, options, storage=storage, evaluator=evaluator)

    counts = run_sharded(shard, evaluator, lead)
    if not shard.is_main:
        raise SystemExit(0)  # ranks > 0 are done: rank 0 alone re-scores and reports
    return counts
