"""PairedPruner on the exact GMM companion (digits-gmm, FID-digits): a setting far worse than the incumbent
is pruned at the first rung; a setting equal to the incumbent is not."""

from __future__ import annotations

import optuna
import pytest

from edmbench.study.pruners import ATTR_RUNGS, PairedPruner, rung_evidence, write_rung_evidence
from edmbench.study.record import TrialRecord

NUM_IMAGES, RUNGS = 100, (50,)


@pytest.fixture(scope="module")
def scoring():
    from edmbench.metrics.features import get_extractor
    from edmbench.metrics.stats import load_reference
    from edmbench.pretrained import load
    from edmbench.resources import data_path

    return (load("digits-gmm"), get_extractor("digits-classifier", None, device="cpu"),
            load_reference(data_path("pretrained/digits-train-stats.npz")))


def test_far_worse_is_pruned_at_the_first_rung_and_an_equal_one_is_not(scoring):
    # Heun 4 steps (NFE 7) is the incumbent; Heun 2 steps (NFE 3) is far worse (measured with Heun 6 as
    # incumbent at 60 images: +720 FID-digits, 95% paired interval [+638, +803]); Heun 4 again has
    # difference exactly 0 at every rung and must never be pruned.
    study = optuna.create_study(pruner=PairedPruner(level=0.95))
    for steps in (4, 2, 4):
        study.enqueue_trial({"num_steps": steps})
    study.optimize(scored_objective(scoring, "fid"), n_trials=3)
    incumbent, worse, equal = study.trials
    assert incumbent.state == optuna.trial.TrialState.COMPLETE
    assert worse.state == optuna.trial.TrialState.PRUNED and worse.last_step == RUNGS[0]
    assert equal.state == optuna.trial.TrialState.COMPLETE
    number, diff = PairedPruner().decide(study, worse)
    assert number == incumbent.number and diff.verdict() == "worse" and diff.interval[0] > 0


def test_no_incumbent_no_evidence_never_prunes():
    study = optuna.create_study(pruner=PairedPruner())
    trial = study.ask()
    trial.report(1.0, 10)
    assert not trial.should_prune()  # no evidence stored
    write_rung_evidence(trial, 10, 1.0, [1.0, 1.1, 0.9])
    assert rung_evidence(study.trials[0], 10) == (1.0, [1.0, 1.1, 0.9])
    assert not trial.should_prune()  # no other trial at that rung
    assert ATTR_RUNGS in study.trials[0].user_attrs
    with pytest.raises(ValueError, match="level"):
        PairedPruner(level=0)


def test_paired_pruner_in_a_study_spec(assets):
    """[pruner] type = "paired" through the spec, the registry and StudyObjective's rung evidence: on the tiny
    exact mixture, Heun 2 steps after Heun 8 is pruned at the rung; Heun 8 again is not."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import spec_text

    from edmbench.study.objective import make_evaluator
    from edmbench.study.search import make_pruner
    from edmbench.study.spec import parse_spec

    space = '[space.num_steps]\ntype = "int"\nlow = 2\nhigh = 12\n'
    spec = parse_spec(spec_text(assets, "paired", space=space, num_images=40, rungs="[20]", n_trials=3,
                                extra='[pruner]\ntype = "paired"\n'))
    pruner = make_pruner(spec)
    assert isinstance(pruner, PairedPruner)
    study = optuna.create_study(pruner=pruner)
    for steps in (8, 2, 8):
        study.enqueue_trial({"num_steps": steps})
    study.optimize(make_evaluator(spec), n_trials=3)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
    reason = TrialRecord.read(study.trials[1]).pruned_reason  # the evidence, not a threshold
    assert reason.startswith("paired difference to trial 0: +") and "n = 20)" in reason
    assert "worse side of 0" in reason and "95% paired interval" in reason


def scored_objective(scoring, name: str, kid_pr=None, meter=None):
    """Score a trial's Heun setting on seeds 0..99 by the registered objective ``name``, writing its rung
    evidence (Score value, leave-one-group-out values) before asking the pruner."""
    from edmbench.metrics.evaluate import score_rungs
    from edmbench.sampling import SamplerConfig
    from edmbench.study.objectives import get_objective

    denoiser, extractor, reference = scoring
    scored = get_objective(name) if meter is None else meter

    def run(trial: optuna.Trial) -> float:
        config = SamplerConfig.from_dict({"sampler": "heun", "num_steps": trial.suggest_int("num_steps", 2, 8)})  # noqa: E501
        meters = ({scored.name: scored.meter(denoiser, config, range(NUM_IMAGES), "cpu")} if scored.meter
                  else None)
        for result in score_rungs(denoiser, config, range(NUM_IMAGES), extractor, reference, RUNGS,
                                  batch_size=50, class_policy=None, kid_pr=kid_pr, meters=meters):
            score = scored.score(result)
            if result.num_images < NUM_IMAGES:
                write_rung_evidence(trial, result.num_images, score.value, score.loo)
                trial.report(score.value, result.num_images)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        return score.value

    return run


class _MeanDistance:
    """A per-seed objective for the test: each image's RMS distance (uint8 units) to mid-grey."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def update(self, batch) -> None:
        x = batch.images.double() - 127.5
        self.values += x.flatten(1).pow(2).mean(1).sqrt().tolist()

    def result(self):
        import numpy as np

        from edmbench.metrics.evaluate import Score

        return Score(float(np.mean(self.values)), per_seed=np.asarray(self.values))


@pytest.mark.parametrize("name", ["kid", "per_seed"])
def test_paired_pruner_for_kid_and_per_seed_objectives(scoring, name):
    """KID (jackknife of KID_u over the seed groups) and a per-seed objective (leave-one-group-out means)
    give the pruner its paired evidence: Heun 2 after Heun 4 is pruned at the rung, Heun 4 again is not."""
    from edmbench.metrics.kid_pr import KIDPROptions
    from edmbench.study.objectives import Objective

    meter = None
    if name == "per_seed":
        meter = Objective("grey_distance", "minimize", "grey distance", "test", per_seed=True,
                          score=lambda rung: rung.extra["grey_distance"], meter=lambda *a: _MeanDistance())
    # per-seed: Heun 2's images are farther from grey than Heun 4's (measured at 100 images: 126.7 vs 113.6)
    study = optuna.create_study(pruner=PairedPruner(level=0.95))
    for steps in (4, 2, 4):
        study.enqueue_trial({"num_steps": steps})
    study.optimize(scored_objective(scoring, "kid", KIDPROptions(kid=True), meter), n_trials=3)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert len(rung_evidence(study.trials[1], RUNGS[0])[1]) == 10
