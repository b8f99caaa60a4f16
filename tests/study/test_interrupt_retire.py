"""An interrupt whose retire step fails (the interrupt cut a storage statement short) still ends the
run as an interrupt (exit 130), not as the retire's storage error; the trial is left for the stale-heartbeat
retry."""

from __future__ import annotations

import types

import pytest

from edmbench.study import runner


def test_a_failed_retire_after_an_interrupt_keeps_the_interrupt(monkeypatch, caplog) -> None:
    import sqlalchemy.exc

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    def broken_retire(*args, **kwargs):
        raise sqlalchemy.exc.OperationalError("UPDATE trials", {}, Exception("canceling statement"))

    monkeypatch.setattr(runner, "evaluate", interrupted)
    monkeypatch.setattr(runner, "retire", broken_retire)
    spec = types.SimpleNamespace(metric=types.SimpleNamespace(num_images=10))
    options = types.SimpleNamespace(progress=False, grace_s=30.0)
    trial = types.SimpleNamespace(number=7)
    with pytest.raises(KeyboardInterrupt), caplog.at_level("WARNING", logger="edmbench.study"):
        runner._run_one(object(), trial, lambda *a: None, spec, options, worker_id=0)
    assert "trial 7 could not be retired after the interrupt" in caplog.text
    assert "stays RUNNING" in caplog.text


def test_a_retire_after_an_interrupt_is_still_made(monkeypatch) -> None:
    calls = []

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "evaluate", interrupted)
    monkeypatch.setattr(runner, "retire", lambda study, trial, reason, retry: calls.append((reason, retry)))
    spec = types.SimpleNamespace(metric=types.SimpleNamespace(num_images=10))
    options = types.SimpleNamespace(progress=False, grace_s=30.0)
    with pytest.raises(KeyboardInterrupt):
        runner._run_one(object(), types.SimpleNamespace(number=3), lambda *a: None, spec, options,
                        worker_id=0)
    assert calls == [("interrupted by the user", True)]
