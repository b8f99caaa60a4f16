"""Optuna search samplers and pruners as registry entries: ``[search] sampler`` and ``[pruner] type`` are
validated against :data:`SEARCH_SAMPLERS` / :data:`PRUNERS`, and :func:`make_sampler` / :func:`make_pruner`
build what the entry says. Adding one is one ``register`` call."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from edmbench.registry import Registry


@dataclasses.dataclass(frozen=True)
class SearchSampler:
    """``make(search_spec, seed)`` -> an ``optuna.samplers.BaseSampler``; ``multi_objective``: it supports
    more than one objective; ``asks``: it proposes points (grid studies run only their enqueued points)."""

    make: Callable[[Any, int], Any]
    multi_objective: bool
    description: str
    asks: bool = True


@dataclasses.dataclass(frozen=True)
class Pruner:
    """``make(pruner_spec, rungs)`` -> an ``optuna.pruners.BasePruner`` (rungs: the image counts)."""

    make: Callable[[Any, tuple[int, ...]], Any]
    description: str


def _optuna() -> Any:
    import optuna

    return optuna


def _tpe(s: Any, seed: int) -> Any:
    return _optuna().samplers.TPESampler(seed=seed, n_startup_trials=s.n_startup_trials)


def _gp(s: Any, seed: int) -> Any:
    return _optuna().samplers.GPSampler(seed=seed, n_startup_trials=s.n_startup_trials)


def _cmaes(s: Any, seed: int) -> Any:
    return _optuna().samplers.CmaEsSampler(seed=seed, n_startup_trials=s.n_startup_trials)


def _random(s: Any, seed: int) -> Any:
    return _optuna().samplers.RandomSampler(seed=seed)


SEARCH_SAMPLERS: Registry[SearchSampler] = Registry("search sampler", [
    ("tpe", SearchSampler(_tpe, True, "tree-structured Parzen estimator (Optuna's default)")),
    ("gp", SearchSampler(_gp, True, "Gaussian-process Bayesian optimisation")),
    ("cmaes", SearchSampler(_cmaes, False, "CMA evolution strategy (single objective)")),
    ("random", SearchSampler(_random, True, "uniform random")),
    ("grid", SearchSampler(_random, True, "every point of a finite space exactly once (enqueued at "
                           "creation; the sampler is never asked)", asks=False)),
])


def _median(p: Any, rungs: tuple[int, ...]) -> Any:
    warmup = rungs[min(p.n_warmup_rungs, len(rungs)) - 1] if p.n_warmup_rungs else 0
    return _optuna().pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=warmup)


def _paired() -> Any:
    from edmbench.study.pruners import PairedPruner

    return PairedPruner()


PRUNERS: Registry[Pruner] = Registry("pruner", [
    ("median", Pruner(_median, "stop a trial whose score at a rung is worse than the median of earlier "
                               "trials at that rung")),
    ("successive_halving", Pruner(lambda p, rungs: _optuna().pruners.SuccessiveHalvingPruner(
        min_resource=rungs[0], reduction_factor=2), "asynchronous successive halving from the first rung")),
    ("none", Pruner(lambda p, rungs: _optuna().pruners.NopPruner(), "never prune")),
    ("paired", Pruner(lambda p, rungs: _paired(), "stop a trial only when its paired interval against the "
                      "incumbent at the same rung (shared seeds) says it is worse (edmbench.study.pruners)")),
])


def make_sampler(spec: Any, seed: int | None = None) -> Any:
    """The Optuna sampler named in ``[search]``, seeded with ``seed`` (default ``[search] seed``). Grid
    studies run only their pre-enqueued points."""
    seed = spec.search.seed if seed is None else seed
    return SEARCH_SAMPLERS.get(spec.search.sampler).make(spec.search, seed)


def make_pruner(spec: Any) -> Any:
    """The pruner named in ``[pruner]`` over the first objective reported at the image-count rungs (steps =
    images). Multi-objective studies cannot report intermediate values in Optuna, so they never prune."""
    rungs = spec.metric.rungs
    if spec.multi_objective or not rungs:
        return PRUNERS.get("none").make(spec.pruner, rungs)
    return PRUNERS.get(spec.pruner.type).make(spec.pruner, rungs)
