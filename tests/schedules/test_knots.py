"""knots: explicit schedules are validated; every searched suggestion is a valid schedule."""

from __future__ import annotations

import random

import optuna
import pytest
import torch

from edmbench.sampling.knots import (
    check_sigmas,
    fractions_from_levels,
    knot_names,
    knot_params,
    levels_from_fractions,
    suggest_levels,
)
from edmbench.sampling.spacings import polynomial_levels

GITS_6 = [80, 10.9836, 3.8811, 1.584, 0.5666, 0.1698, 0.002]  # ecosystem-facts §6: a GITS CIFAR-10 schedule


def test_published_schedule_is_accepted():
    assert check_sigmas(GITS_6, num_levels=7, sigma_min=0.002, sigma_max=80) == [float(s) for s in GITS_6]
    assert check_sigmas([*GITS_6, 0], num_levels=7)[-1] == 0.0


@pytest.mark.parametrize(("sigmas", "kwargs", "message"), [
    ([80, 10, 10, 0.002], {}, r"strictly decreasing: sigmas\[2\] = 10.0"),
    ([80, 1, 5, 0.002], {}, r"strictly decreasing: sigmas\[2\] = 5.0"),
    ([0.002, 80], {}, "strictly decreasing"),
    ([80, 1, 0.002], {"num_levels": 4}, "has 3 non-zero levels, expected 4"),
    ([100, 1, 0.002], {"sigma_max": 80}, r"sigmas\[0\] = 100.0 exceeds sigma_max = 80"),
    ([80, 1, 0.001], {"sigma_min": 0.002}, r"sigmas\[2\] = 0.001 is below sigma_min = 0.002"),
    ([80, -1, 0], {}, r"sigmas\[1\] = -1.0 must be > 0"),
    ([80, "a", 0.1], {}, r"sigmas\[1\] = 'a' is not a finite number"),
    ([80, float("nan")], {}, "not a finite number"),
    ("80, 1", {}, "must be a list of numbers"),
    ([0], {}, "at least one level > 0"),
])
def test_bad_explicit_schedules_are_refused(sigmas, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_sigmas(sigmas, **kwargs)


@pytest.mark.parametrize(("fractions", "message"), [([0.5, 1.5], "knot_2 = 1.5 must be a number in"),
                                                    ([-0.1], "knot_1 = -0.1"), ([True], "knot_1 = True")])
def test_bad_fractions_are_refused(fractions, message):
    with pytest.raises(ValueError, match=message):
        levels_from_fractions(fractions, 0.002, 80.0)


def _valid(levels: torch.Tensor, n: int, lo: float, hi: float) -> None:
    assert levels.shape == (n,) and levels.dtype == torch.float64
    assert (levels.diff() < 0).all(), levels
    assert levels[0].item() == hi and levels[-1].item() == lo
    check_sigmas(levels.tolist(), num_levels=n, sigma_min=lo, sigma_max=hi)


def test_every_optuna_suggestion_is_valid():
    """Property test: random (including extreme) suggestions for 3..14 levels on random ranges."""
    rng = random.Random(0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for sampler in (optuna.samplers.RandomSampler(seed=0), optuna.samplers.TPESampler(seed=0)):
        study = optuna.create_study(sampler=sampler)
        for _ in range(60):
            n, lo = rng.randint(3, 14), 10 ** rng.uniform(-4, -1)
            hi = lo * 10 ** rng.uniform(0.5, 6)
            trial = study.ask()
            levels = suggest_levels(trial, n, lo, hi)
            _valid(levels, n, lo, hi)
            assert sorted(trial.params) == sorted(knot_names(n))
            study.tell(trial, float(levels.sum()))
    for extreme in (0.0, 1.0):  # both ends of every knot's range: the tightest schedules still valid
        for n in (3, 10, 30):
            _valid(levels_from_fractions([extreme] * (n - 2), 0.002, 80.0), n, 0.002, 80.0)


def test_fractions_round_trip_and_enqueue_rho7():
    rho7 = polynomial_levels(10, 0.002, 80.0, 7.0)
    params = knot_params(rho7)
    assert list(params) == knot_names(10) and all(0 <= u <= 1 for u in params.values())
    torch.testing.assert_close(levels_from_fractions(list(params.values()), 0.002, 80.0), rho7,
                               rtol=1e-12, atol=0)
    gits = torch.tensor(GITS_6, dtype=torch.float64)
    torch.testing.assert_close(levels_from_fractions(fractions_from_levels(gits), 0.002, 80.0), gits,
                               rtol=1e-12, atol=0)
