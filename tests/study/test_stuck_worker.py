"""A worker process that is still alive long after the study last had a running trial (it has nothing left
to do) is stuck: the command prints its stacks, stops it and goes on, instead of waiting forever."""

from __future__ import annotations

import sys
import types
from pathlib import Path

from edmbench.study import runner, workers

sys.path.insert(0, str(Path(__file__).parent))
from stuck_worker import wait_forever  # noqa: E402


def test_a_worker_stuck_after_the_study_is_idle_is_stopped(monkeypatch, caplog):
    monkeypatch.setattr(workers, "STUCK_S", 0.0)
    spec = types.SimpleNamespace(source_text="", path="spec.toml")
    options = runner.RunOptions(workers=2)
    polls: list[bool] = []

    def busy() -> bool:  # one running trial seen, then none
        polls.append(not polls)
        return polls[-1]

    with caplog.at_level("WARNING", logger="edmbench.study"):
        counts = workers.run_processes(wait_forever, spec, options, lambda opts: {"COMPLETE": 12}, busy=busy)
    assert counts == {"COMPLETE": 12}
    assert polls == [True, False]  # not stopped while a trial was running
    assert "edmbench-worker-1" in caplog.text and "is stuck" in caplog.text
    assert "exited with code -9" in caplog.text  # killed after its stacks were printed
