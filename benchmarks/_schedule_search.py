"""Shared pieces of the schedule benchmarks (``low_nfe_digits.py``, ``bench_schedules.py``): a knots search
scored by the teacher distance, optionally pruned by Optuna's ``WilcoxonPruner`` on the per-seed values.

The searched schedule is ``num_steps`` levels from sigma_max to sigma_min (then 0, EDM's end point), its
``num_steps - 2`` interior levels the ``knot_k`` fractions of ``edmbench.sampling.knots`` (every suggestion
valid). rho = 7 is enqueued first, so every search starts from EDM's schedule.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def knots_config(solver: str, levels: Sequence[float]):
    """A ``knots`` SamplerConfig (EDM end point: the levels, then 0)."""
    from edmbench.sampling import SamplerConfig

    levels = [float(s) for s in levels]
    return SamplerConfig.from_dict({"sampler": solver, "num_steps": len(levels), "discretization": "knots",
                                    "sigmas": levels})


def teacher_distances(denoiser, config, seeds: Sequence[int], teacher: dict[int, torch.Tensor],
                      batch_size: int) -> Iterator[tuple[list[int], np.ndarray]]:
    """A generator of (seeds of the batch, per-seed pixel teacher distance), batch by batch."""
    from edmbench.generate import generate_images
    from edmbench.metrics.teacher import pixel_distance

    with torch.no_grad():
        for batch in generate_images(denoiser, config, list(seeds), batch_size=batch_size, class_policy=None):
            ref = torch.stack([teacher[int(s)] for s in batch.seeds])
            yield list(batch.seeds), pixel_distance(batch.images, ref).numpy()


@dataclasses.dataclass
class SearchTrial:
    """One trial: its levels, mean teacher distance over the seeds it saw, images generated, pruned?"""

    levels: list[float]
    value: float
    images: int
    pruned: bool


def proxy_knots_search(denoiser, solver: str, num_steps: int, seeds: Sequence[int],
                       teacher: dict[int, torch.Tensor], *, trials: int, prune: bool, seed: int = 0,
                       batch_size: int = 16, startup: int = 5) -> list[SearchTrial]:
    """TPE over the knots of ``num_steps`` levels scored by the mean per-seed teacher distance on ``seeds``.

    With ``prune``, every per-seed value is reported at step = its index (Optuna's ``WilcoxonPruner``
    compares a trial seed by seed with the best trial, Wilcoxon signed-rank, p < 0.1) and the trial stops at
    the first batch where the pruner says so; as Optuna's documentation advises for TPE, a pruned trial is
    told the mean of the values it saw. Returns the trials in order."""
    import optuna

    from edmbench.sampling.knots import knot_params, suggest_levels
    from edmbench.sampling.spacings import polynomial_levels

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        pruner = optuna.pruners.WilcoxonPruner(p_threshold=0.1) if prune else optuna.pruners.NopPruner()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup),
                                pruner=pruner)
    study.enqueue_trial(knot_params(polynomial_levels(num_steps, SIGMA_MIN, SIGMA_MAX, 7.0)))
    out: list[SearchTrial] = []
    for _ in range(trials):
        trial = study.ask()
        levels = suggest_levels(trial, num_steps, SIGMA_MIN, SIGMA_MAX).tolist()
        values: list[float] = []
        pruned = False
        for _, dist in teacher_distances(denoiser, knots_config(solver, levels), seeds, teacher, batch_size):
            for v in dist:
                trial.report(float(v), step=len(values))
                values.append(float(v))
            if prune and len(values) < len(seeds) and trial.should_prune():
                pruned = True
                break
        value = float(np.mean(values))
        study.tell(trial, value)
        out.append(SearchTrial(levels, value, len(values), pruned))
    return out


def best_complete(trials: Sequence[SearchTrial]) -> SearchTrial:
    """The lowest-valued trial that saw every seed (a pruned trial's mean is over fewer seeds)."""
    return min((t for t in trials if not t.pruned), key=lambda t: t.value)
