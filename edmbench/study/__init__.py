"""Optuna-driven FID studies from TOML specs (``run_study.py``; reference: ``docs/studies.md``).

Public API (imported lazily, so ``import edmbench`` stays light): ``load_spec``, ``parse_spec``,
``load_specs``, ``parse_specs`` (a ``[sweep]``: one spec per value),
``StudySpec``, ``SpecError``, ``RunOptions``, ``run_study``, ``trials_table``, ``write_report``,
``make_plan``, ``rescore``, ``TrialRecord``, ``Objective``, ``register_objective``.
"""

from __future__ import annotations

from edmbench._lazy import lazy_getattr

_LAZY = {
    "load_spec": "edmbench.study.spec", "parse_spec": "edmbench.study.spec",
    "load_specs": "edmbench.study.spec", "parse_specs": "edmbench.study.spec",
    "StudySpec": "edmbench.study.spec",
    "SpecError": "edmbench.study._checks", "RunOptions": "edmbench.study.runner",
    "run_study": "edmbench.study.runner", "trials_table": "edmbench.study.results",
    "write_report": "edmbench.study.report", "make_plan": "edmbench.study.plan",
    "rescore": "edmbench.study.rescore", "TrialRecord": "edmbench.study.record",
    "Objective": "edmbench.study.objectives", "register_objective": "edmbench.study.objectives",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
