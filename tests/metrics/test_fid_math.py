"""FID linear algebra: our symmetric-eigenvalue path against torch-fidelity's ``fid_statistics_to_metric``
(the design guide's source of truth for distances), and the downdated jackknife against the naive one."""

import numpy as np
import pytest

from edmbench.metrics.fid import (
    FIDStream,
    frechet_distance,
    torch_fidelity_frechet_distance,
    trace_roots,
)
from edmbench.metrics.stats import ReferenceStats, StreamingStats


def _spectral_cov(d: int, rng: np.random.Generator, power: float) -> np.ndarray:
    """A covariance with a decaying spectrum lambda_k = k^-power (Inception features decay roughly so)."""
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (q * np.arange(1, d + 1) ** -power) @ q.T


def _pair(d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    sigma_r, sigma_g = _spectral_cov(d, rng, 1.2), _spectral_cov(d, rng, 1.0)
    return rng.normal(size=d) * 0.1, sigma_g, rng.normal(size=d) * 0.1, sigma_r


@pytest.mark.parametrize("d", [64, 512, pytest.param(2048, marks=pytest.mark.slow)])
def test_frechet_distance_equals_torch_fidelity(d):
    mu_g, sigma_g, mu_r, sigma_r = _pair(d)
    ours = frechet_distance(mu_g, sigma_g, mu_r, sigma_r)
    theirs = torch_fidelity_frechet_distance(mu_g, sigma_g, mu_r, sigma_r)
    assert ours == pytest.approx(theirs, rel=1e-6)  # the bar at Inception size
    assert ours > 0.1  # not a degenerate comparison


def _naive_loo(rows: np.ndarray, seeds: np.ndarray, k: int, reference: ReferenceStats) -> np.ndarray:
    """Leave group g = {s : s % k == g} out, recompute the statistics from its rows, then the FID."""
    out = []
    for g in range(k):
        stats = StreamingStats().update(rows[seeds % k != g])
        out.append(torch_fidelity_frechet_distance(stats.mean, stats.cov, reference.mu, reference.sigma))
    return np.array(out)


def test_downdated_jackknife_equals_the_naive_leave_one_group_out():
    d, n, k = 32, 700, 10
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + 1.0
    ref_rows = rng.normal(size=(900, d)) @ rng.normal(size=(d, d)) * 0.3 + 1.1
    reference = StreamingStats().update(ref_rows).to_reference()
    seeds = rng.permutation(5000)[:n]  # scattered seeds: groups follow s % k, not the row position
    stream = FIDStream(reference, groups=k)
    for chunk in np.array_split(np.arange(n), 9):
        stream.update(rows[chunk], seeds=seeds[chunk].tolist())
    jack = stream.jackknife()
    full = StreamingStats().update(rows)
    assert jack.num_images == n and jack.groups == k
    assert jack.full == pytest.approx(torch_fidelity_frechet_distance(full.mean, full.cov, reference.mu,
                                                                      reference.sigma), rel=1e-8)
    np.testing.assert_allclose(jack.loo, _naive_loo(rows, seeds, k, reference), rtol=1e-8)
    result = stream.result()
    assert result.fid == jack.full and result.fid_loo == tuple(jack.loo)


def test_groups_follow_seeds_so_two_orderings_pair_exactly():
    d, n = 16, 300
    rng = np.random.default_rng(4)
    rows, seeds = rng.normal(size=(n, d)), np.arange(1000, 1000 + n)
    reference = ReferenceStats(np.zeros(d), np.eye(d))
    forward, backward = FIDStream(reference), FIDStream(reference)
    forward.update(rows, seeds=seeds.tolist())
    for chunk in np.array_split(np.arange(n)[::-1], 7):  # reversed order, other batch boundaries
        backward.update(rows[chunk], seeds=seeds[chunk].tolist())
    np.testing.assert_allclose(backward.jackknife().loo, forward.jackknife().loo, rtol=1e-12)


def test_a_cached_reference_root_gives_the_same_fid():
    mu_g, sigma_g, mu_r, sigma_r = _pair(64, seed=5)
    reference = ReferenceStats(mu_r, sigma_r)
    assert frechet_distance(mu_g, sigma_g, mu_r, sigma_r, sqrt_sigma2=reference.sqrt_sigma) == pytest.approx(
        torch_fidelity_frechet_distance(mu_g, sigma_g, mu_r, sigma_r), rel=1e-8)


def test_concurrent_eigenvalue_solves_equal_serial_ones():
    """K + 1 solves in threads (single-threaded LAPACK each) give the serial values, in order."""
    rng = np.random.default_rng(6)
    mats = np.stack([_spectral_cov(48, rng, 1.0 + 0.1 * i) for i in range(5)])
    serial = trace_roots(mats, workers=1)
    np.testing.assert_allclose(trace_roots(mats, workers=3), serial, rtol=1e-12)
    exact = [np.sqrt(np.clip(np.linalg.eigvalsh(m), 0, None)).sum() for m in mats]
    np.testing.assert_allclose(serial, exact, rtol=1e-12)
    assert len(set(serial.round(8))) == 5  # distinct matrices: an order mix-up would show
