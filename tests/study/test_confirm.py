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


def _trial(number: int, steps: int, value: float, loo: list[float], label: str | None = None):
    attrs = {"result": {"fid": value, "fid_err": 1.0, "num_images": 32},
             "rungs": {"16": {"value": value + 0.5, "loo": loo}}}
    if label:
        attrs["enqueue_label"] = label
    return optuna.trial.create_trial(params={"num_steps": steps},
                                     distributions={"num_steps": optuna.distributions.IntDistribution(2, 12)},
                                     value=value, user_attrs=attrs)


def test_search_order_penalises_a_difference_that_is_only_noise(assets):
    """Rank 1 is the lowest (trial - baseline) + CHOICE_Z paired SE: a trial 1.0 better than the baseline
    with a paired SE of ~2 is not chosen over one 0.2 better with a SE of ~0.03; the plain order would."""
    import numpy as np

    from edmbench.study.confirm import CHOICE_Z, search_order

    spec = parse_spec(spec_text(assets, "order", space=SPACE, extra=RESCORE))
    rng = np.random.default_rng(0)
    base = list(10.5 + 0.1 * rng.standard_normal(10))
    noisy = list(np.array(base) - 1.0 + 1.0 * rng.standard_normal(10))   # paired SE ~ 3 at 16 images
    steady = list(np.array(base) - 0.2 + 0.01 * rng.standard_normal(10))  # paired SE ~ 0.03
    study = optuna.create_study()
    for t in (_trial(0, 8, 10.0, base, "default"), _trial(1, 4, 9.0, noisy), _trial(2, 10, 9.8, steady)):
        study.add_trial(t)
    assert [int(n) for n in results.ranked(results.trials_table(study, spec), spec)["number"]] == [1, 2, 0]
    assert search_order(study, spec) == [2, 0, 1]
    assert search_order(study, spec, z=0.0) == [1, 2, 0]  # z = 0: the plain search order
    assert CHOICE_Z == 1.0
    assert [number for number, _ in candidates(study, spec)][:1] == [2]  # top_k = 1: trial 2 is rank 1


def test_heldout_points_for_the_plot(assets):
    """The FID-vs-NFE plot's held-out marks: one per confirmed trial, the bias-corrected mean over the ranges
    with its interval, the role shortened ("rank 1 = baseline" when the chosen trial is the baseline)."""
    from edmbench.study.report import heldout_points

    spec, study, records = run(assets, [("EDM default", 8), (None, 2)])
    points = heldout_points(results.rescore_table(study), "fid")
    by_role = {p.role: p for p in points}
    assert set(by_role) == {"rank 1 = baseline"}  # Heun 8 beats Heun 2, so rank 1 is the baseline
    (point,) = points
    mean = confirmed(records, "fid")[0].mean
    assert point.fid == mean.debiased and point.interval == mean.interval and point.num_images == 128
    assert point.nfe == 15 and point.interval[0] < point.fid < point.interval[1]


def test_confirmation_in_worker_processes_equals_the_serial_one(assets, tmp_path):
    from edmbench.study.rescore import rescore
    from edmbench.study.storage import open_storage

    spec = parse_spec(spec_text(assets, "confirm", space=SPACE, extra=RESCORE, rungs="[]", n_trials=3))
    evaluator = make_evaluator(spec)
    stored = []
    for workers in (1, 2):
        url = f"sqlite:///{tmp_path / f'w{workers}.db'}"
        study = optuna.create_study(study_name=spec.name, storage=open_storage(url))
        for label, steps in [("EDM default", 8), (None, 4), (None, 12)]:
            attrs = enqueue_attrs(label=label) if label else None
            study.enqueue_trial({"num_steps": steps}, user_attrs=attrs)
        study.optimize(evaluator, n_trials=3)
        rescore(study, spec, evaluator.scorer, workers=workers, storage_url=url)
        stored.append({k: {f: v for f, v in r.items() if f != "wall_time_s"}
                       for k, r in optuna.load_study(study_name=spec.name, storage=url).user_attrs.items()
                       if k.startswith("rescore:")})
    assert len(stored[0]) >= 2  # rank 1 and the baseline (one trial if they are the same) x 2 ranges
    assert stored[1] == stored[0]  # the same records, scored in two spawned processes
