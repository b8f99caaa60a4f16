"""An evaluator factory for the interruption tests: the default evaluator, except that trial number
``$EDMBENCH_TEST_HOLD_FROM`` (and any later one) stops at its first progress report (its knobs are chosen),
writes ``$EDMBENCH_TEST_GATE/holding-<number>`` and waits there until ``$EDMBENCH_TEST_GATE/open`` exists.

The test then acts (SIGKILL, SIGINT) on a trial that is known to be RUNNING, instead of racing a deadline.
Used as ``run_study.py SPEC --evaluator tests/study/gated_evaluator.py:make_gated_evaluator``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

HOLD_BOUND_S = 900.0  # a held trial that is never released fails instead of hanging the test run


class _HoldingProgress:
    """Forwards to the runner's progress object; the first ``images_done`` of a held trial blocks."""

    def __init__(self, inner: Any, gate: Path, number: int) -> None:
        self._inner, self._gate, self._number, self._held = inner, gate, number, False

    def images_done(self, n: int) -> None:
        if not self._held:
            self._held = True
            self._hold()
        self._inner.images_done(n)

    def _hold(self) -> None:
        (self._gate / f"holding-{self._number}").write_text(str(os.getpid()))
        start = time.monotonic()
        while not (self._gate / "open").exists():  # SIGINT lands here as KeyboardInterrupt
            if time.monotonic() - start > HOLD_BOUND_S:
                raise RuntimeError(f"trial {self._number} held for {HOLD_BOUND_S:g} s and never released")
            time.sleep(0.05)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def make_gated_evaluator(spec: Any, *, device: str = "cpu", batch_size: int = 64, worker_id: int = 0):
    from edmbench.study.objective import make_evaluator

    inner = make_evaluator(spec, device=device, batch_size=batch_size, worker_id=worker_id)
    gate, hold_from = Path(os.environ["EDMBENCH_TEST_GATE"]), int(os.environ["EDMBENCH_TEST_HOLD_FROM"])

    def evaluate(trial: Any, progress: Any) -> Any:
        if trial.number >= hold_from and not (gate / "open").exists():
            progress = _HoldingProgress(progress, gate, trial.number)
        return inner(trial, progress)

    return evaluate
