"""The trial record: every Optuna attribute edmbench writes on a trial, and the one place that reads it back.

Attribute names live in this module only. User attrs (``trial.user_attrs``):

- ``result``: ``{<objective>: value, <objective>_err: error, ..., "num_images": n, "wall_time_s": t}`` --
  the latest rung's scores, the images they were computed on (a pruned or failed trial: the count it
  reached) and the time spent so far;
- ``nfe``: denoiser evaluations per sample; ``provenance``: :func:`edmbench.provenance.provenance` plus
  ``spec_hash``, ``seeds``, ``model``, ``extractor``, ``reference``;
- ``rungs``: the rung evidence, ``{str(n): {"value": v, "loo": [K leave-one-seed-group-out values]}}`` of
  the primary objective at each rung reached and at the full count (written before the pruner is asked;
  paired pruning and the choice penalty read it);
- ``enqueue_label``, ``grid_index``, ``retry_of``: where an enqueued trial came from;
- ``pruned_reason``, ``fail_reason``: why it stopped.

Study user attrs: ``rescore:<trial>:<seed_start>`` (one final re-scoring, :mod:`edmbench.study.rescore`).
System attrs (``trial.system_attrs``, written by the runner): ``edmbench:retired`` (the reason a trial was
retired and does not count) and ``edmbench:heartbeat``.

``sampler_config`` is the one function that rebuilds a ``SamplerConfig`` from a spec's ``[fixed]`` knobs and a
trial's parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

ATTR_RESULT = "result"
ATTR_NFE = "nfe"
ATTR_ENDPOINT, ATTR_AFS, ATTR_NETWORK_ROUNDS = "endpoint", "afs", "network_rounds"  # beside nfe
ATTR_PROVENANCE = "provenance"
ATTR_ENQUEUE_LABEL = "enqueue_label"
ATTR_GRID_INDEX = "grid_index"
ATTR_RETRY_OF = "retry_of"
ATTR_PRUNED_REASON = "pruned_reason"
ATTR_FAIL_REASON = "fail_reason"
ATTR_RUNGS = "rungs"                     # {str(n): {"value": v, "loo": [K floats]}} of the primary objective
ATTR_RETIRED = "edmbench:retired"        # system attr
ATTR_HEARTBEAT = "edmbench:heartbeat"    # system attr
ATTR_RETRY = "edmbench:retry"            # system attr: the retired trial wants a retry
ATTR_RETRY_FOR = "edmbench:retry_for"    # system attr: number of the retired trial a retry replaces
RESCORE_PREFIX = "rescore:"              # study attr rescore:<trial>:<seed_start>, see study.rescore
NUM_IMAGES = "num_images"
WALL_TIME_S = "wall_time_s"
ORIGIN_ATTRS = (ATTR_ENQUEUE_LABEL, ATTR_GRID_INDEX)  # carried over to a retry
NOTES = (ATTR_ENQUEUE_LABEL, ATTR_GRID_INDEX, ATTR_RETRY_OF, ATTR_FAIL_REASON, ATTR_PRUNED_REASON)


@dataclasses.dataclass
class TrialRecord:
    """What edmbench stores on one trial. ``None`` fields are unknown (and not written)."""

    scores: dict[str, float | None] = dataclasses.field(default_factory=dict)  # {"fid": .., "fid_err": ..}
    num_images: int | None = None
    wall_time_s: float | None = None
    nfe: int | None = None
    endpoint: str | None = None        # the NFE convention (edmbench.sampling.conventions) ...
    afs: bool | None = None            # ... and whether the analytic first step saved a call
    network_rounds: int | None = None  # sequential network rounds per sample
    provenance: dict[str, Any] | None = None
    enqueue_label: str | None = None
    grid_index: int | None = None
    retry_of: int | None = None
    pruned_reason: str | None = None
    fail_reason: str | None = None
    retired: str | None = None  # read only: the runner writes it as a system attr
    rungs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # see write_rung_evidence

    def write(self, trial: Any) -> None:
        """Set every known field on a live ``optuna.Trial`` (the result as one attribute, one write)."""
        if self.scores or self.num_images is not None or self.wall_time_s is not None:
            result = {**self.scores}
            if self.num_images is not None:
                result[NUM_IMAGES] = int(self.num_images)
            if self.wall_time_s is not None:
                result[WALL_TIME_S] = round(float(self.wall_time_s), 3)
            trial.set_user_attr(ATTR_RESULT, result)
        for name, value in ((ATTR_NFE, self.nfe), (ATTR_ENDPOINT, self.endpoint), (ATTR_AFS, self.afs),
                            (ATTR_NETWORK_ROUNDS, self.network_rounds), (ATTR_PROVENANCE, self.provenance),
                            (ATTR_ENQUEUE_LABEL, self.enqueue_label), (ATTR_GRID_INDEX, self.grid_index),
                            (ATTR_RETRY_OF, self.retry_of), (ATTR_PRUNED_REASON, self.pruned_reason),
                            (ATTR_FAIL_REASON, self.fail_reason)):
            if value is not None:
                trial.set_user_attr(name, value)

    @classmethod
    def read(cls, trial: Any) -> TrialRecord:
        """The record of a ``FrozenTrial`` (or live trial)."""
        user, system = trial.user_attrs, getattr(trial, "system_attrs", {})
        result = dict(user.get(ATTR_RESULT, {}))
        num_images = result.pop(NUM_IMAGES, result.pop("n_images", None))  # "n_images": studies before 0.2
        wall = result.pop(WALL_TIME_S, None)
        pruned = result.pop(ATTR_PRUNED_REASON, None) or user.get(ATTR_PRUNED_REASON)
        return cls(scores=result, num_images=num_images, wall_time_s=wall, nfe=user.get(ATTR_NFE),
                   endpoint=user.get(ATTR_ENDPOINT), afs=user.get(ATTR_AFS),
                   network_rounds=user.get(ATTR_NETWORK_ROUNDS), provenance=user.get(ATTR_PROVENANCE),
                   enqueue_label=user.get(ATTR_ENQUEUE_LABEL),
                   grid_index=user.get(ATTR_GRID_INDEX), retry_of=user.get(ATTR_RETRY_OF),
                   pruned_reason=pruned, fail_reason=user.get(ATTR_FAIL_REASON),
                   retired=system.get(ATTR_RETIRED), rungs=dict(user.get(ATTR_RUNGS, {})))

    def notes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in NOTES}


def write_rung_evidence(trial: Any, num_images: int, value: float, loo: Any) -> None:
    """Add one rung's evidence (primary objective value, leave-one-group-out values) to a live trial."""
    evidence = dict(trial.user_attrs.get(ATTR_RUNGS, {}))
    evidence[str(int(num_images))] = {"value": float(value), "loo": [float(v) for v in (loo or ())]}
    trial.set_user_attr(ATTR_RUNGS, evidence)


def rung_evidence(trial: Any, num_images: int) -> tuple[float, list[float]] | None:
    """(value, leave-one-group-out values) of a trial at a rung, or None when it has none there."""
    entry = trial.user_attrs.get(ATTR_RUNGS, {}).get(str(int(num_images)))
    if not entry or len(entry.get("loo", ())) < 2:
        return None
    return float(entry["value"]), list(entry["loo"])


def is_retired(trial: Any) -> bool:
    """Whether the runner retired the trial (it does not count against the budget)."""
    return ATTR_RETIRED in trial.system_attrs


def enqueue_attrs(*, label: str | None = None, grid_index: int | None = None) -> dict[str, Any]:
    """The user attrs of an enqueued trial (``study.enqueue_trial(params, user_attrs=...)``)."""
    out: dict[str, Any] = {}
    if label is not None:
        out[ATTR_ENQUEUE_LABEL] = label
    if grid_index is not None:
        out[ATTR_GRID_INDEX] = grid_index
    return out


def retry_attrs(trial: Any) -> dict[str, Any]:
    """The user attrs of the retry of ``trial``: its origin, and the first trial of the retry chain."""
    keep = {k: v for k, v in trial.user_attrs.items() if k in ORIGIN_ATTRS}
    return {**keep, ATTR_RETRY_OF: trial.user_attrs.get(ATTR_RETRY_OF, trial.number)}


def rescore_key(number: int, seed_start: int) -> str:
    """The study user attr holding the re-scoring of trial ``number`` on seeds from ``seed_start``."""
    return f"{RESCORE_PREFIX}{number}:{seed_start}"


def rescore_records(study: Any) -> list[dict[str, Any]]:
    """Every stored re-scoring record, in key order."""
    return [value for key, value in sorted(study.user_attrs.items()) if key.startswith(RESCORE_PREFIX)]


def sampler_config(fixed: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    """The ``SamplerConfig`` of ``[fixed]`` knobs plus a trial's (or enqueued point's) parameters.

    Raises ``ValueError``/``TypeError`` as ``SamplerConfig`` does."""
    from edmbench.sampling import SamplerConfig

    return SamplerConfig.from_dict({**fixed, **params})
