"""FID linear algebra: our symmetric-eigenvalue path against torch-fidelity's ``fid_statistics_to_metric``
(the design guide's source of truth for distances), and the downdated jackknife against the naive one."""

import numpy as np
import pytest
import torch

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


def _svd_fid(rows: np.ndarray, reference: ReferenceStats) -> float:
    """FID with Tr((A Sigma A)^(1/2)) as the sum of the singular values of the centred rotated rows over
    sqrt(n - 1): an oracle independent of both eigenvalue routes, exact at any rank."""
    x = rows - reference.mu
    mean, centred = x.mean(0), x - x.mean(0)
    root = np.linalg.svd(centred @ reference.sqrt_sigma, compute_uv=False).sum() / np.sqrt(len(rows) - 1)
    trace = (centred**2).sum() / (len(rows) - 1)
    return float((mean**2).sum() + trace + np.trace(reference.sigma) - 2 * root)


def _oracle_jackknife(rows: np.ndarray, seeds: np.ndarray, k: int, reference: ReferenceStats) -> np.ndarray:
    subsets = [rows] + [rows[seeds % k != g] for g in range(k)]
    return np.array([_svd_fid(part, reference) for part in subsets])


def test_row_mode_below_d_images_then_the_scatters_past_it():
    """With N <= D images the stream keeps rows and solves [m - 1, m - 1] Grams (Sigma has rank N - 1):
    equal to the SVD oracle to 1e-12 where the [D, D] route is only good to ~1e-8; past D images it folds
    the rows into the scatters and equals a stream that never kept rows."""
    d, k = 96, 10
    rng = np.random.default_rng(8)
    mu_r, sigma_r = rng.normal(size=d) * 0.1, _spectral_cov(d, rng, 1.2)
    reference = ReferenceStats(mu_r, sigma_r)
    rows = rng.normal(size=(150, d)) @ np.linalg.cholesky(_spectral_cov(d, rng, 1.0)).T + 0.05
    seeds = rng.permutation(1000)[:150]
    rowwise, dense = FIDStream(reference, groups=k), FIDStream(reference, groups=k, row_limit=0)
    for stream in (rowwise, dense):
        for chunk in np.array_split(np.arange(60), 4):
            stream.update(rows[chunk], seeds=seeds[chunk].tolist())
    few = rowwise.jackknife()
    assert rowwise.moments.scatter is None and rowwise.moments.rows.shape == (60, d)
    expected = _oracle_jackknife(rows[:60], seeds[:60], k, reference)
    np.testing.assert_allclose(np.r_[few.full, few.loo], expected, rtol=1e-12)
    fallback = dense.jackknife()
    np.testing.assert_allclose(np.r_[fallback.full, fallback.loo], expected, rtol=1e-6)
    full = StreamingStats().update(rows[:60])
    oracle = torch_fidelity_frechet_distance(full.mean, full.cov, mu_r, sigma_r)
    assert few.full == pytest.approx(oracle, rel=1e-6)

    for stream in (rowwise, dense):
        stream.update(rows[60:], seeds=seeds[60:].tolist())
    many, dense_many = rowwise.jackknife(), dense.jackknife()
    assert rowwise.moments.rows is None and rowwise.moments.scatter.shape == (k, d, d)
    np.testing.assert_allclose(np.r_[many.full, many.loo], _oracle_jackknife(rows, seeds, k, reference),
                               rtol=1e-8)
    np.testing.assert_allclose(np.r_[many.full, many.loo], np.r_[dense_many.full, dense_many.loo], rtol=1e-10)


def test_row_mode_with_one_group_and_an_empty_group():
    """No error bar (K = 1), and K groups of which one is empty (no jackknife): the FID alone, in row mode."""
    d = 40
    rng = np.random.default_rng(9)
    reference = ReferenceStats(np.zeros(d), _spectral_cov(d, rng, 1.1))
    rows = rng.normal(size=(30, d))
    expected = _svd_fid(rows, reference)
    one = FIDStream(reference, groups=1)
    one.update(rows)
    assert one.result().fid == pytest.approx(expected, rel=1e-12) and one.moments.scatter is None
    gappy = FIDStream(reference, groups=10)
    gappy.update(rows, seeds=[10 * i for i in range(30)])  # every seed in group 0
    result = gappy.result()
    assert result.fid == pytest.approx(expected, rel=1e-12) and result.fid_loo == ()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("n", [60, 150], ids=["row-mode", "scatters"])
def test_the_stream_on_cuda_equals_the_cpu(n):
    """Moments, Grams and eigenvalue solves on the device (one batched solve for the [D, D] route, one per
    subset in row mode) give the CPU's FID and leave-one-out values (float64, different kernels)."""
    d = 96
    rng = np.random.default_rng(10)
    reference = ReferenceStats(rng.normal(size=d) * 0.1, _spectral_cov(d, rng, 1.2))
    rows = rng.normal(size=(n, d)) @ np.linalg.cholesky(_spectral_cov(d, rng, 1.0)).T
    results = []
    for device in ("cpu", "cuda"):
        stream = FIDStream(reference, groups=10, device=device)
        stream.update(rows, seeds=list(range(n)))
        results.append(stream.result())
    assert results[1].fid == pytest.approx(results[0].fid, rel=1e-10)
    np.testing.assert_allclose(results[1].fid_loo, results[0].fid_loo, rtol=1e-10)


@pytest.mark.parametrize("row_limit", [None, 0], ids=["row-mode", "scatters"])
def test_a_jackknife_with_a_set_of_one_image_is_refused(row_limit):
    """3 images in 10 groups: the leave-one-out sets have 2 images, the full set 3; 2 images in 2 groups:
    a leave-one-out set of 1 image has no covariance, said in one line instead of a division by zero."""
    reference = ReferenceStats(np.zeros(4), np.eye(4))
    rows = np.random.default_rng(11).normal(size=(3, 4))
    stream = FIDStream(reference, groups=10, row_limit=row_limit)
    stream.update(rows)
    assert np.isfinite(stream.jackknife().loo).all()
    pair = FIDStream(reference, groups=2, row_limit=row_limit)
    pair.update(rows[:2])
    with pytest.raises(ValueError, match="2 feature rows; with 2 images in 2 seed groups a set has 1"):
        pair.jackknife()
