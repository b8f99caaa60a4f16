"""Paired differences on shared seeds (edmbench.metrics.paired): verdict words, coverage on a synthetic
problem with known FIDs, and the unpaired interval shown wider."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edmbench.metrics.fid import frechet_distance
from edmbench.metrics.paired import (
    Difference,
    combine,
    loo_from_per_seed,
    paired_difference,
    unpaired_difference,
)

D, K = 4, 10  # feature dimension, seed groups


def fid_and_loo(rows: np.ndarray, groups: int = K) -> tuple[float, list[float]]:
    """FID of rows against N(0, I) on all rows and with each seed group (row i -> group i mod K) left out."""
    def fid(x: np.ndarray) -> float:
        return frechet_distance(x.mean(0), np.cov(x, rowvar=False), np.zeros(D), np.eye(D))

    group = np.arange(len(rows)) % groups
    return fid(rows), [fid(rows[group != k]) for k in range(groups)]


# Setting a: x = 1.1 z + 0.3; setting b: x = 1.0 z + 0.3 + 0.2 e (z shared per seed, e independent).
# Closed form for N(m 1, s^2 I) against N(0, I): FID = D m^2 + D (s - 1)^2.
TRUE_A = D * 0.3**2 + D * (1.1 - 1) ** 2
TRUE_B = D * 0.3**2 + D * (math.sqrt(1 + 0.2**2) - 1) ** 2


def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    z, e = rng.standard_normal((n, D)), rng.standard_normal((n, D))
    return 1.1 * z + 0.3, z + 0.3 + 0.2 * e


def test_coverage_of_the_paired_interval_and_the_unpaired_is_wider():
    # n = 1000 images per setting, R = 200 repetitions, claimed coverage 0.95. Binomial bound: the covered
    # count has sd sqrt(200 * 0.95 * 0.05) = 3.08, so a correct interval covers >= 190 - 5 * 3.08 = 175
    # times (5 sigma); we also require <= 200 (trivially) and an upper 5-sigma bound that rules out a
    # wildly conservative interval is not asserted (the jackknife is mildly conservative for FID).
    rng, n, reps = np.random.default_rng(0), 1000, 200
    covered, widths, naive = 0, [], []
    for _ in range(reps):
        a, b = draw(rng, n)
        (fa, la), (fb, lb) = fid_and_loo(a), fid_and_loo(b)
        d = paired_difference(fa, la, fb, lb, n)
        u = unpaired_difference(fa, la, fb, lb, n)
        covered += d.interval[0] <= TRUE_A - TRUE_B <= d.interval[1]
        widths.append(d.interval[1] - d.interval[0])
        naive.append(u.interval[1] - u.interval[0])
    assert covered >= 175, f"paired interval covered the true difference {covered}/{reps} times"
    # measured (seed 0): 189/200 covered, unpaired/paired width ratio 4.45 (the shared z cancels)
    assert np.mean(naive) > 2 * np.mean(widths)


def test_verdict_words_follow_the_interval():
    d = Difference(-1.0, -1.0, 0.2, (-1.5, -0.5), 0.95, 9, 500)
    assert d.verdict("minimize") == "better" and d.verdict("maximize") == "worse"
    assert Difference(1.0, 1.0, 0.2, (0.5, 1.5), 0.95, 9, 500).verdict() == "worse"
    same = Difference(0.1, 0.1, 0.2, (-0.4, 0.6), 0.95, 9, 500)
    assert same.verdict() == "not distinguishable at n = 500"
    # n needed: half-width t_9 * 0.2 = 0.4524 (t_{9, 0.975} = 2.2622) against |d| = 0.1 -> 500 * 4.524^2
    assert same.images_to_separate() == math.ceil(500 * (2.2621571627409915 * 0.2 / 0.1) ** 2)


def test_identical_settings_are_not_distinguishable_and_a_shift_is_worse():
    rng = np.random.default_rng(1)
    a, _ = draw(rng, 500)
    fa, la = fid_and_loo(a)
    same = paired_difference(fa, la, fa, la, 500)
    assert same.debiased == 0 and same.se == 0 and same.verdict().startswith("not distinguishable")
    fw, lw = fid_and_loo(a + 0.5)  # mean shifted by 0.5 more per dimension: clearly worse
    assert paired_difference(fw, lw, fa, la, 500).verdict() == "worse"


def test_combine_independent_ranges():
    d1 = Difference(1.0, 1.0, 0.3, (0.3, 1.7), 0.95, 9, 500)
    d2 = Difference(2.0, 2.0, 0.4, (1.1, 2.9), 0.95, 9, 500)
    c = combine([d1, d2])
    assert c.debiased == pytest.approx(1.5) and c.se == pytest.approx(0.25, rel=1e-12)  # sqrt(.09+.16)/2
    assert c.num_images == 1000 and 9 < c.df < 18


def test_loo_from_per_seed_and_bad_input():
    full, loo = loo_from_per_seed([1.0, 2.0, 3.0, 4.0], [0, 1, 2, 3], groups=2)
    assert full == 2.5 and loo == [3.0, 2.0]  # group 0 = seeds {0, 2}: left out -> mean(2, 4)
    with pytest.raises(ValueError, match="same length"):
        paired_difference(1.0, [1.0, 2.0], 1.0, [1.0, 2.0, 3.0], 10)
    with pytest.raises(ValueError, match="level"):
        paired_difference(1.0, [1.0, 2.0], 1.0, [1.0, 2.0], 10, level=1.5)


# ---- KID's paired path (edmbench.metrics.kid_pr.kid_jackknife) ------------------------------------------

def _kid_u(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 with kernel (a . b / d + 1)^3, written out (the module docstring's formula)."""
    def k(a, b):
        return (a @ b.T / a.shape[1] + 1.0) ** 3

    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * k(x, y).sum() / (n * m))


def test_kid_jackknife_equals_torch_fidelity_and_brute_force_leave_one_out():
    import torch
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric

    from edmbench.metrics.kid_pr import kid_jackknife

    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((90, 6)) + 0.2, rng.standard_normal((90, 6))
    full, loo = kid_jackknife(x, y, groups=K, chunk=37)  # chunk not dividing n: the diagonal bookkeeping
    # torch-fidelity with one subset holding every row of both sets computes the same U-statistic
    tf = kid_features_to_metric(torch.from_numpy(x), torch.from_numpy(y), kid_subsets=1, kid_subset_size=90,
                                rng_seed=0, verbose=False)[KEY_METRIC_KID_MEAN]
    assert full == pytest.approx(tf, rel=1e-10) and full == pytest.approx(_kid_u(x, y), rel=1e-12)
    group = np.arange(len(x)) % K
    expected = [_kid_u(x[group != g], y) for g in range(K)]
    np.testing.assert_allclose(loo, expected, rtol=1e-12)


def test_kid_paired_interval_is_narrower_than_unpaired():
    # the two settings of ``draw`` share z per seed; KID's paired jackknife SE (n = 400) must be well below
    # the unpaired sqrt(se_a^2 + se_b^2): measured (seed 1) 0.034 vs 0.133, ratio 4.0.
    from edmbench.metrics.kid_pr import kid_jackknife

    rng = np.random.default_rng(1)
    a, b = draw(rng, 400)
    ref = rng.standard_normal((400, D))
    (fa, la), (fb, lb) = kid_jackknife(a, ref), kid_jackknife(b, ref)
    d, u = paired_difference(fa, la, fb, lb, 400), unpaired_difference(fa, la, fb, lb, 400)
    assert u.se > 2 * d.se


def test_per_seed_objective_gets_leave_one_group_out_values():
    """A per-seed objective's Score carries the leave-one-group-out means (row r mod 10)."""
    from edmbench.metrics.evaluate import Score
    from edmbench.study.objectives import Objective

    values = np.arange(40, dtype=float) ** 2
    toy = Objective("toy_per_seed", "minimize", "toy", "test", score=lambda rung: Score(values.mean(),
                    per_seed=values), per_seed=True)
    score = toy.score(None)
    assert len(score.loo) == 10
    np.testing.assert_allclose(score.loo, loo_from_per_seed(values, range(40))[1], rtol=1e-14)
