"""Progress bars: one for the study (finished trials of the budget), one per trial (images, current score)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from edmbench.study.record import is_retired


class TrialBar:
    """What an evaluator reports while it works: images done so far and the score at the last rung."""

    def __init__(self, bar: Any | None) -> None:
        self._bar = bar
        self.images = 0
        self.value: float | None = None

    def images_done(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n - self.images)
        self.images = n

    def rung(self, n: int, value: float, label: str = "score") -> None:
        self.value = value
        if self._bar is not None:
            self._bar.set_postfix_str(f"{label}@{n}={value:.3f}")


class StudyBar:
    def __init__(self, bar: Any | None) -> None:
        self._bar = bar

    def refresh_from(self, study: Any) -> None:
        if self._bar is None:
            return
        import optuna

        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                  optuna.trial.TrialState.FAIL)
        done = [t for t in study.get_trials(deepcopy=False, states=states) if not is_retired(t)]
        self._bar.n = len(done)
        best = _best_value(study)
        if best is not None:
            self._bar.set_postfix_str(f"best={best:.3f}")
        self._bar.refresh()


def _best_value(study: Any) -> float | None:
    try:
        return None if len(study.directions) > 1 else float(study.best_value)
    except ValueError:
        return None


@contextmanager
def study_bar(study: Any, total: int | None, *, enabled: bool) -> Iterator[StudyBar]:
    if not enabled:
        yield StudyBar(None)
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=f"study {study.study_name}", unit="trial", position=0, dynamic_ncols=True)
    progress = StudyBar(bar)
    progress.refresh_from(study)
    try:
        yield progress
    finally:
        bar.close()


@contextmanager
def trial_bar(number: int, total_images: int, worker_id: int, *, enabled: bool) -> Iterator[TrialBar]:
    if not enabled:
        yield TrialBar(None)
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total_images, desc=f"  trial {number}", unit="img", position=worker_id + 1,
               leave=False, dynamic_ncols=True)
    try:
        yield TrialBar(bar)
    finally:
        bar.close()
