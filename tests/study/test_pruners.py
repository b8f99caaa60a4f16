"""PairedPruner on the exact GMM companion (digits-gmm, FID-digits): a setting far worse than the incumbent
is pruned at the first rung; a setting equal to the incumbent is not."""

from __future__ import annotations

import optuna
import pytest

from edmbench.study.pruners import ATTR_RUNGS, PairedPruner, rung_evidence, write_rung_evidence

NUM_IMAGES, RUNGS = 100, (50,)


@pytest.fixture(scope="module")
def scoring():
    from edmbench.metrics.features import get_extractor
    from edmbench.metrics.stats import load_reference
    from edmbench.pretrained import load
    from edmbench.resources import data_path

    return (load("digits-gmm"), get_extractor("digits-classifier", None, device="cpu"),
            load_reference(data_path("pretrained/digits-train-stats.npz")))


def objective(scoring):
    """Score a trial's Heun setting on seeds 0..99, writing the rung evidence before asking the pruner."""
    from edmbench.metrics.evaluate import score_rungs
    from edmbench.sampling import SamplerConfig

    denoiser, extractor, reference = scoring

    def run(trial: optuna.Trial) -> float:
        config = SamplerConfig.from_dict({"sampler": "heun", "num_steps": trial.suggest_int("num_steps", 2, 8)})  # noqa: E501
        for result in score_rungs(denoiser, config, range(NUM_IMAGES), extractor, reference, RUNGS,
                                  batch_size=100, class_policy=None):
            if result.n < NUM_IMAGES:
                write_rung_evidence(trial, result.n, result.fid, result.fid_loo)
                trial.report(result.fid, result.n)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        return result.fid

    return run


def test_far_worse_is_pruned_at_the_first_rung_and_an_equal_one_is_not(scoring):
    # Heun 4 steps (NFE 7) is the incumbent; Heun 2 steps (NFE 3) is far worse (measured with Heun 6 as
    # incumbent at 60 images: +720 FID-digits, 95% paired interval [+638, +803]); Heun 4 again has
    # difference exactly 0 at every rung and must never be pruned.
    study = optuna.create_study(pruner=PairedPruner(level=0.95))
    for steps in (4, 2, 4):
        study.enqueue_trial({"num_steps": steps})
    study.optimize(objective(scoring), n_trials=3)
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
