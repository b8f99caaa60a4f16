"""Optuna storage, sampler and pruner for a spec, and the one-time initialisation of a study.

Storages: any SQLAlchemy URL (``sqlite:///runs/x/study.db`` by default, ``postgresql+psycopg://...`` for many
machines) or ``journal:PATH`` for Optuna's file journal. Initialisation (spec fingerprint, enqueued
settings, every grid point) happens once per study, guarded by the storage itself: only the process whose
``create_study`` succeeds enqueues, and it marks the study initialised when done.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from edmbench.study.space import grid_points
from edmbench.study.spec import StudySpec

ATTR_SPEC_HASH = "edmbench:spec_hash"
ATTR_SPEC_TEXT = "edmbench:spec"
ATTR_READY = "edmbench:initialised"
JOURNAL_PREFIX = "journal:"


def default_storage_url(spec: StudySpec, runs_dir: str | Path = "runs") -> str:
    return f"sqlite:///{Path(runs_dir) / spec.name / 'study.db'}"


def open_storage(url: str) -> Any:
    """An Optuna storage for ``url``: ``journal:PATH`` or any SQLAlchemy URL."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ValueError(f"storage {url!r} is not a URL: give e.g. sqlite:///runs/x/study.db, "
                         "postgresql+psycopg://user@host:5432/db or journal:runs/x/journal.log")
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}  # wait on locks from parallel workers
    else:
        engine_kwargs = {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def make_sampler(spec: StudySpec) -> Any:
    """The Optuna sampler named in ``[search]``. Grid studies run only their pre-enqueued points."""
    import optuna

    s = spec.search
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.n_startup_trials)
    if s.sampler == "gp":
        return optuna.samplers.GPSampler(seed=s.seed, n_startup_trials=s.n_startup_trials)
    if s.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=s.seed, n_startup_trials=s.n_startup_trials)
    return optuna.samplers.RandomSampler(seed=s.seed)  # "random"; "grid" never asks it for a value


def make_pruner(spec: StudySpec) -> Any:
    """Median / successive-halving pruning over FID reported at the image-count rungs (steps = images).

    Multi-objective studies cannot report intermediate values in Optuna, so they never prune.
    """
    import optuna

    p, rungs = spec.pruner, spec.metric.rungs
    if p.type == "none" or spec.multi_objective or not rungs:
        return optuna.pruners.NopPruner()
    if p.type == "median":
        warmup = rungs[min(p.n_warmup_rungs, len(rungs)) - 1] if p.n_warmup_rungs else 0
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=warmup)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=rungs[0], reduction_factor=2)


def directions(spec: StudySpec) -> list[str]:
    return ["minimize"] * len(spec.objectives)


def open_study(spec: StudySpec, storage: Any, *, wait_s: float = 60.0) -> Any:
    """Create (and initialise) the study, or load it and check that it was made from the same spec."""
    import optuna

    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, directions=directions(spec),
                                    sampler=make_sampler(spec), pruner=make_pruner(spec))
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=make_sampler(spec),
                                  pruner=make_pruner(spec))
        _wait_until_ready(study, spec, wait_s)
        return study
    _initialise(study, spec)
    return study


def _initialise(study: Any, spec: StudySpec) -> None:
    import optuna

    study.set_user_attr(ATTR_SPEC_HASH, spec.spec_hash)
    study.set_user_attr(ATTR_SPEC_TEXT, spec.source_text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(spec.objectives))
    is_grid = spec.search.sampler == "grid"
    grid = list(grid_points(spec.space, spec.fixed, spec.constraints)) if is_grid else []
    labels = {}
    for item in spec.enqueue:  # an enqueued point that is also a grid point is run once, with its label
        if item.params in grid:
            labels[grid.index(item.params)] = item.label
        else:
            study.enqueue_trial(item.params, user_attrs={"enqueue_label": item.label})
    for index, point in enumerate(grid):
        extra = {"enqueue_label": labels[index]} if index in labels else {}
        study.enqueue_trial(point, user_attrs={"grid_index": index, **extra})
    study.set_user_attr(ATTR_READY, True)


def _wait_until_ready(study: Any, spec: StudySpec, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while not study.user_attrs.get(ATTR_READY):
        if time.monotonic() > deadline:
            raise RuntimeError(f"study {spec.name!r} exists but was never fully initialised (its creator "
                               f"stopped while enqueueing); delete it (optuna delete-study --study-name "
                               f"{spec.name} --storage URL) and run again")
        time.sleep(0.5)
    stored = study.user_attrs.get(ATTR_SPEC_HASH)
    if stored != spec.spec_hash:
        raise RuntimeError(f"study {spec.name!r} in this storage was created from a different spec "
                           f"(spec sha256 {stored} != {spec.spec_hash}); rename the study or use a new "
                           "storage to start over")
