"""Run a study: worker loops over a shared storage, resume after crashes, grid points exactly once.

Design (``docs/studies.md``, "Workers, resume and crashes"):

- Every running trial carries a heartbeat (trial system attr ``edmbench:heartbeat``, wall-clock seconds)
  refreshed by a thread every ``heartbeat_s``. It works the same on SQLite, PostgreSQL and journal files.
- A RUNNING trial whose heartbeat is older than ``grace_s`` belongs to a dead worker: any worker retires it
  (state FAIL, system attr ``edmbench:retired`` = reason) and enqueues a retry with the same parameters.
  The storage lets exactly one retirer win the FAIL transition, so there is exactly one retry.
- Grid studies enqueue every grid point once at creation (``storage.open_study``); workers only pop WAITING
  trials (an atomic WAITING -> RUNNING transition in the storage) and never ask the sampler for points.
- The budget counts trials that are not retired. A worker starts a sampled trial only while that count is
  below ``n_trials``; a trial started concurrently beyond the budget is retired without retry.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from edmbench.study import progress as bars
from edmbench.study.spec import StudySpec, parse_spec
from edmbench.study.storage import default_storage_url, open_storage, open_study

ATTR_HEARTBEAT = "edmbench:heartbeat"
ATTR_RETIRED = "edmbench:retired"
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
    """Mark a RUNNING trial failed-and-retired; enqueue one retry. False when another process won."""
    import optuna

    storage = study._storage
    try:
        storage.set_trial_system_attr(trial._trial_id, ATTR_RETIRED, reason)
        if not storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    if retry:
        params = trial.system_attrs.get("fixed_params", trial.params)
        keep = {k: v for k, v in trial.user_attrs.items() if k in ("enqueue_label", "grid_index")}
        study.enqueue_trial(params, user_attrs={**keep, "retry_of": trial.user_attrs.get("retry_of",
                                                                                           trial.number)})
    _log.warning("trial %d retired (%s)%s", trial.number, reason, "; retry enqueued" if retry else "")
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


def _pop_waiting(study: Any) -> int | None:
    """Claim one WAITING trial; the storage's WAITING -> RUNNING transition is atomic."""
    import optuna

    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.RUNNING):
                return trial._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def next_trial(study: Any, spec: StudySpec, n_trials: int | None) -> Any | None:
    """The next trial to evaluate (enqueued first), or None when there is nothing left to start."""
    import optuna

    trial_id = _pop_waiting(study)
    if trial_id is not None:
        return optuna.Trial(study, trial_id)
    if spec.search.sampler == "grid" or (n_trials is not None and budget_used(study) >= n_trials):
        return None
    trial = study.ask()
    if n_trials is not None:
        earlier = [t for t in study.get_trials(deepcopy=False) if t.number <= trial.number]
        if sum(not is_retired(t) for t in earlier) > n_trials:
            retire(study, study._storage.get_trial(trial._trial_id), "over budget: started "
                   "concurrently with the last trial of the budget", retry=False)
            return None
    return trial


@contextmanager
def heartbeat(study: Any, trial_id: int, every_s: float) -> Iterator[None]:
    """Refresh ``edmbench:heartbeat`` on the trial every ``every_s`` seconds while the block runs."""
    storage, stop = study._storage, threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.set_trial_system_attr(trial_id, ATTR_HEARTBEAT, time.time())
            except Exception:  # the trial finished or was retired meanwhile; nothing left to keep alive
                return
            if stop.wait(every_s):
                return

    storage.set_trial_system_attr(trial_id, ATTR_HEARTBEAT, time.time())
    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial_id}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def evaluate(study: Any, trial: Any, evaluator: Callable[..., Any], options: RunOptions,
             progress: bars.TrialBar) -> str:
    """Run one trial to a final state; returns that state's name. KeyboardInterrupt propagates (the
    caller retires the trial)."""
    import optuna

    with heartbeat(study, trial._trial_id, options.heartbeat_s):
        try:
            values = evaluator(trial, progress)
            state, reason = optuna.trial.TrialState.COMPLETE, None
        except optuna.TrialPruned:
            values, state, reason = None, optuna.trial.TrialState.PRUNED, None
        except Exception as exc:  # a failed trial is recorded with its reason and the study goes on
            values, state, reason = None, optuna.trial.TrialState.FAIL, f"{type(exc).__name__}: {exc}"
            _log.warning("trial %d failed: %s", trial.number, reason)
        try:
            if reason is not None:
                trial.set_user_attr("fail_reason", reason)
            study.tell(trial, values, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            _log.warning("trial %d was retired by another worker meanwhile; its result is dropped and "
                         "its retry stands", trial.number)
            return "RETIRED"
    return state.name


def worker_loop(spec: StudySpec, options: RunOptions, worker_id: int = 0,
                storage: Any = None) -> dict[str, int]:
    """Evaluate trials until the budget, the grid or the time is used up. Returns counts by state."""
    study = open_study(spec, storage or open_storage(options.storage_url(spec)))
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
                if not _others_running(study):
                    break
                time.sleep(min(options.heartbeat_s, 1.0))  # a dead worker's trial may still need a retry
                continue
            try:
                with bars.trial_bar(trial.number, spec.metric.num_images, worker_id,
                                    enabled=options.progress) as progress:
                    state = evaluate(study, trial, evaluator, options, progress)
            except KeyboardInterrupt:  # Ctrl-C / SIGTERM: retry this trial when the study is resumed
                frozen = study._storage.get_trial(trial._trial_id)
                retire(study, frozen, "interrupted by the user", retry=True)
                raise
            counts[state] = counts.get(state, 0) + 1
            study_progress.refresh_from(study)
    return counts


def _others_running(study: Any) -> bool:
    import optuna

    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))


def _worker_entry(spec_text: str, spec_path: str, options: RunOptions, worker_id: int) -> None:
    spec = parse_spec(spec_text, source=spec_path)
    with suppress(KeyboardInterrupt):
        worker_loop(spec, options, worker_id)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_study(spec: StudySpec, options: RunOptions) -> dict[str, int]:
    """Initialise the study, then run ``options.workers`` worker loops (processes when more than one)."""
    storage = open_storage(options.storage_url(spec))
    open_study(spec, storage)  # create + enqueue once, before any worker starts
    if options.workers <= 1:
        return worker_loop(spec, options, storage=storage)
    from edmbench.study.workers import run_processes

    return run_processes(_worker_entry, spec, options,
                         lambda opts: worker_loop(spec, opts, worker_id=0, storage=storage))
