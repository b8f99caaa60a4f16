"""Pruning that knows its uncertainty: stop a trial at a rung only when, paired on the shared seeds and at
the same image count, its interval says it is worse than the incumbent's (:mod:`edmbench.metrics.paired`).

A median pruner compares one noisy value with the median of other noisy values; at 100 images FID-digits
has standard errors of 10-50, so most of its decisions are coin flips. Here every trial stores, at each
rung, its primary objective's value and its K leave-one-seed-group-out values (the rung evidence,
``ATTR_RUNGS``, written by :func:`edmbench.study.record.write_rung_evidence`). All trials share seeds,
so the difference trial - incumbent at rung n has a paired
jackknife-t interval, and the trial is pruned only when the whole interval lies on the worse side of 0.

False-prune rate: a trial no worse than the incumbent is pruned at one rung with probability at most
(1 - level) / 2 (one side of a two-sided interval), e.g. 2.5 % at ``level`` = 0.95, if the interval's
coverage holds (``tests/metrics/test_paired.py``).
"""

from __future__ import annotations

import optuna

from edmbench.metrics.paired import Difference, paired_difference
from edmbench.study.record import ATTR_RUNGS, rung_evidence, write_rung_evidence

__all__ = ["ATTR_RUNGS", "PairedPruner", "prune_reason", "rung_evidence", "write_rung_evidence"]

class PairedPruner(optuna.pruners.BasePruner):
    """Prune when the paired interval of (trial - incumbent) at the trial's last rung excludes 0 on the
    worse side. The incumbent is the best COMPLETE trial with evidence at that rung (by its final value),
    else, before any trial completes, the best trial at that rung. Never prunes without an incumbent."""

    def __init__(self, level: float = 0.95) -> None:
        if not 0 < level < 1:
            raise ValueError(f"[pruner] level must be in (0, 1), got {level}")
        self.level = level
        self._reasons: dict[int, str] = {}  # trial number -> the evidence it was pruned on (this process)

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        decision = self.decide(study, trial)
        worse = decision is not None and decision[1].verdict(_direction(study)) == "worse"
        if worse:
            number, difference = decision
            self._reasons[trial.number] = (f"paired difference to trial {number}: {difference.describe()} "
                                           "lies on the worse side of 0")
        return worse

    def reason(self, number: int) -> str | None:
        """Why trial ``number`` was pruned in this process (the paired interval), or None."""
        return self._reasons.get(number)

    def decide(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> tuple[int, Difference] | None:
        """(incumbent number, paired difference trial - incumbent) at the trial's last rung, or None."""
        step = trial.last_step
        own = rung_evidence(trial, step) if step is not None else None
        if own is None:
            return None
        incumbent = self.incumbent(study, trial.number, step)
        if incumbent is None:
            return None
        number, (value, loo) = incumbent
        if len(loo) != len(own[1]):
            return None  # different seed groupings: not paired
        return number, paired_difference(own[0], own[1], value, loo, step, self.level)

    @staticmethod
    def incumbent(study: optuna.Study, exclude: int,
                  step: int) -> tuple[int, tuple[float, list[float]]] | None:
        """The trial to beat at ``step`` images (see the class docstring) and its evidence there."""
        sign = 1.0 if _direction(study) == "minimize" else -1.0
        states = optuna.trial.TrialState
        rows = [(t, rung_evidence(t, step)) for t in study.get_trials(deepcopy=False)
                if t.number != exclude and t.state in (states.COMPLETE, states.PRUNED, states.RUNNING)]
        rows = [(t, e) for t, e in rows if e is not None]
        complete = [(t, e) for t, e in rows if t.state == states.COMPLETE and t.value is not None]
        if complete:
            best, evidence = min(complete, key=lambda r: sign * r[0].value)
        elif rows:
            best, evidence = min(rows, key=lambda r: sign * r[1][0])
        else:
            return None
        return best.number, evidence


def _direction(study: optuna.Study) -> str:
    return "maximize" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "minimize"


def prune_reason(pruner: optuna.pruners.BasePruner | None, number: int) -> str | None:
    """The evidence a pruner that keeps it (``PairedPruner``) pruned trial ``number`` on, else None."""
    return pruner.reason(number) if isinstance(pruner, PairedPruner) else None
