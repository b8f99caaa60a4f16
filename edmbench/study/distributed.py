"""Study trials sharded over ranks: ``torchrun --nproc-per-node M run_study.py SPEC.toml`` scores each trial's
images on M processes (M GPUs; gloo processes on CPU), one trial at a time.

Roles. Rank 0 alone talks to the Optuna storage: it asks for a trial (sampler, enqueued points, retries,
budget: the ordinary worker loop), builds the trial's ``SamplerConfig`` and broadcasts it with the seeds
and rungs (:func:`announce`). Every rank then generates its share of the seeds and folds its features into
float64 group moments (``edmbench.metrics.shard``: image i still depends only on seed i, each rank reaches
every rung with its share of exactly the rung's first images). At a rung the ranks merge the moments
exactly, rank 0 computes the result and broadcasts it, reports it to Optuna and decides whether to prune;
its decision is broadcast before any rank generates an image past the rung. Ranks > 0 loop in
:func:`follow` until rank 0 announces the end (:func:`release`), then leave: re-scoring and the report
run on rank 0 alone, unsharded.

Failures. Every collective is bounded by ``$EDMBENCH_SHARD_TIMEOUT_S`` (600 s by default): a rank that
dies makes the others fail with ``edmbench.metrics.shard.ShardError`` naming the rank and the timeout; rank 0
retires the running trial with a retry (``runner._run_one``), so re-running the same command redoes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import suppress
from typing import Any


@dataclasses.dataclass(frozen=True)
class TrialWork:
    """What rank 0 broadcasts for one evaluation: the sampler knobs, the seed range and the rungs."""

    config: dict[str, Any]
    seeds: tuple[int, int]   # range(start, stop)
    rungs: tuple[int, ...]


def shard_from_env(device: str) -> Any:
    """The ``Shard`` of this process when torchrun started several (``WORLD_SIZE`` > 1), else None."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from edmbench.metrics.shard import Shard

    return Shard.from_env(device=device)


def announce(shard: Any, config: Any, seeds: range, rungs: tuple[int, ...]) -> None:
    """Rank 0: tell the other ranks which evaluation to run next (they wait in :func:`follow`)."""
    if seeds.step != 1:
        raise ValueError(f"a sharded evaluation needs a contiguous seed range, got {seeds}")
    shard.broadcast_object(TrialWork(config.to_dict(), (seeds.start, seeds.stop), tuple(rungs)))


def release(shard: Any) -> None:
    """Rank 0: no more work; the other ranks leave :func:`follow`. A group already broken is left alone."""
    from edmbench.metrics.shard import ShardError

    with suppress(ShardError):
        shard.broadcast_object(None)


def follow(scorer: Any, shard: Any) -> int:
    """Ranks > 0: score every evaluation rank 0 announces (this rank's share; rank 0 decides when a trial
    stops) until it announces the end. Returns the number of evaluations taken part in."""
    from edmbench.sampling import SamplerConfig

    done = 0
    while (work := shard.broadcast_object(None)) is not None:
        config = SamplerConfig.from_dict(work.config)
        for _ in scorer.rungs(config, range(*work.seeds), work.rungs):
            pass
        done += 1
    return done


def check_options(options: Any, default_evaluator: str) -> None:
    """Under torchrun the ranks are the parallelism: one worker loop (on rank 0), the default evaluator."""
    if options.workers > 1:
        raise ValueError(f"--workers {options.workers} under torchrun: each trial is already split over the "
                         "ranks; use --workers 1 (or M workers per machine without torchrun, see "
                         "docs/studies.md)")
    if options.evaluator != default_evaluator:
        raise ValueError(f"--evaluator {options.evaluator} under torchrun: only the default evaluator "
                         "shards its trials")


def run_sharded(shard: Any, evaluator: Any, lead: Callable[[Any], dict[str, int]]) -> dict[str, int]:
    """Rank 0: ``lead(evaluator)`` runs the worker loop with the sharded ``evaluator`` (a StudyObjective),
    then the other ranks are released. Ranks > 0: follow rank 0 and return ``{"FOLLOWED": n}`` (they never
    open the storage)."""
    if not shard.is_main:
        return {"FOLLOWED": follow(evaluator.scorer, shard)}
    try:
        return lead(evaluator)
    finally:
        release(shard)
