"""Held-out confirmation (edmbench.study.confirm) on the tiny exact mixture: every baseline is re-scored on
held-out seeds, identical settings are "not distinguishable", a clearly worse setting is "worse"."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest

from edmbench.study import results
from edmbench.study.confirm import (
    candidates,
    comparisons,
    confirm,
    confirmation_markdown,
    confirmed,
    heldout_difference,
    heldout_ranges,
    images_spent,
)
from edmbench.study.objective import make_evaluator
from edmbench.study.record import enqueue_attrs
from edmbench.study.spec import parse_spec

sys.path.insert(0, str(Path(__file__).parent))
from conftest import spec_text  # noqa: E402

SPACE = """
[space.num_steps]
type = "int"
low = 2
high = 12
"""
RESCORE = """
[rescore]
top_k = 1
num_images = 64
seed_starts = [1000, 2000]
"""


def run(assets, enqueued: list[tuple[str | None, int]]):
    """A study of the enqueued (label, num_steps) points scored on seeds 0-31, then confirmed."""
    spec = parse_spec(spec_text(assets, "confirm", space=SPACE, extra=RESCORE, rungs="[]",
                                n_trials=len(enqueued)))
    evaluator = make_evaluator(spec)
    study = optuna.create_study()
    for label, steps in enqueued:
        study.enqueue_trial({"num_steps": steps}, user_attrs=enqueue_attrs(label=label) if label else None)
    study.optimize(evaluator, n_trials=len(enqueued))
    return spec, study, confirm(study, spec, evaluator.scorer)


def test_every_baseline_is_rescored_and_identical_settings_are_not_distinguishable(assets):
    # Two baselines (Heun 8 and Heun 8 again) and one searched trial (Heun 8): all identical settings.
    spec, study, records = run(assets, [("EDM default", 8), ("same again", 8), (None, 8)])
    numbers = {number for number, _ in candidates(study, spec)}
    assert numbers == {0, 1}  # rank 1 (trial 0, the first of equal values) and both baselines
    assert {(r["number"], r["seed_start"]) for r in records} == {(0, 1000), (0, 2000), (1, 1000), (1, 2000)}
    result = confirmed(records, "fid")
    assert result[0].values == result[1].values and result[0].spread >= 0
    (comparison,) = comparisons(records, 0, "fid")
    assert comparison.verdict("minimize") == "not distinguishable at n = 128"  # 2 ranges x 64 images
    text = "\n".join(confirmation_markdown(spec, results.trials_table(study, spec), records))
    assert "not distinguishable at n = 128**" in text


def test_a_clearly_worse_baseline_is_worse(assets):
    # Heun 2 steps (NFE 3) against Heun 10 (NFE 19) on the exact mixture: far worse on every range.
    spec, study, records = run(assets, [("coarse", 2), (None, 10)])
    chosen = int(study.best_trial.number)
    assert chosen == 1
    diff = heldout_difference(records, 0, 1, "fid")
    assert diff.verdict("minimize") == "worse" and diff.interval[0] > 0
    (comparison,) = comparisons(records, chosen, "fid")
    assert comparison.verdict("minimize") == "better"
    table = results.trials_table(study, spec)
    search, heldout = images_spent(table, records)
    assert (search, heldout) == (2 * 32, 2 * 2 * 64)
    text = "\n".join(confirmation_markdown(spec, table, results.rescore_table(study)))
    assert "**better**" in text and "trial 1" in text and "320 in all" in text


def test_overlapping_heldout_seeds_are_refused(assets):
    spec = parse_spec(spec_text(assets, "overlap", space=SPACE,
                                extra=RESCORE.replace("[1000, 2000]", "[16]"), rungs="[]"))
    with pytest.raises(ValueError, match="overlaps the search seeds 0-31"):
        heldout_ranges(spec)
