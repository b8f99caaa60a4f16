"""FID / KID / precision-recall: closed forms, agreement with torch-fidelity, rungs, error-bar coverage."""

import math

import numpy as np
import pytest
import torch_fidelity

from edmbench.metrics.features import extract_features
from edmbench.metrics.fid import FIDStream, fid_at_rungs, frechet_distance
from edmbench.metrics.kid_pr import FeatureReservoir, KIDPROptions
from edmbench.metrics.reference import compute_reference
from edmbench.metrics.stats import ReferenceStats, StreamingStats


def test_fid_of_a_set_with_itself_is_zero():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16))
    stats = StreamingStats().update(rows)
    # sqrtm by eigenvalues leaves rounding noise ~1e-12 * trace (edm-facts 9.15: "about 1e-6" for 2048-d)
    assert abs(frechet_distance(stats.mean, stats.cov, stats.mean, stats.cov)) < 1e-9 * np.trace(stats.cov)


def test_pipeline_fid_of_images_against_their_own_reference_is_zero(extractor, make_images):
    images = make_images(200, seed=12)
    reference = compute_reference(images.split(64), extractor)
    (result,) = fid_at_rungs(images.split(50), extractor, reference, uncertainty=None)
    assert result.num_images == 200 and abs(result.fid) < 1e-9 * np.trace(reference.sigma)


def test_fid_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    var1, var2 = rng.uniform(0.1, 3, size=8), rng.uniform(0.1, 3, size=8)
    # diagonal covariances commute: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(v1) - sqrt(v2))^2
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    got = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(mu1, np.diag(var1), mu2[:4], np.diag(var2[:4]))


def _tf_metrics(gen, ref, as_dataset, **kw):
    return torch_fidelity.calculate_metrics(
        input1=as_dataset(gen), input2=as_dataset(ref), feature_extractor="random-conv", cuda=False,
        cache=False, save_cpu_ram=True, verbose=False, batch_size=50, **kw)


@pytest.mark.parametrize("channels", [3, 1])
def test_pipeline_matches_torch_fidelity_calculate_metrics(extractor, make_images, as_dataset, channels):
    gen, ref_images = make_images(300, channels, seed=1, shift=0.3), make_images(400, channels, seed=2)
    options = KIDPROptions(kid=True, prc=True, kid_subsets=20, kid_subset_size=150)
    reference = compute_reference(ref_images.split(64), extractor, keep_features=10_000)
    (result,) = fid_at_rungs(gen.split(64), extractor, reference, kid_pr=options)
    expected = _tf_metrics(gen, ref_images, as_dataset, fid=True, kid=True, prc=True, kid_subsets=20,
                           kid_subset_size=150)
    assert result.num_images == 300
    # design.md: float32 network outputs 1e-6 (torch-fidelity keeps mu in float32, we use float64)
    assert result.fid == pytest.approx(expected["frechet_inception_distance"], rel=1e-6)
    assert result.extra["kid"] == pytest.approx(expected["kernel_inception_distance_mean"], rel=1e-6)
    assert result.extra["kid_std"] == pytest.approx(expected["kernel_inception_distance_std"], rel=1e-6)
    for key in ("precision", "recall", "f_score"):
        assert result.extra[key] == pytest.approx(expected[key], rel=1e-6)
    assert 0 < result.extra["precision"] < 1  # not a degenerate comparison


def test_rungs_come_from_one_stream_and_equal_fresh_runs(extractor, make_images):
    gen = make_images(230, seed=3, shift=0.2)
    reference = compute_reference([make_images(300, seed=4)], extractor)
    consumed = []

    def batches():
        for i, chunk in enumerate(gen.split(32)):
            consumed.append(i)
            yield chunk

    results = []
    for result in fid_at_rungs(batches(), extractor, reference, rungs=[70, 130, 200], groups=5):
        results.append(result)
        # lazily consumed: only the batches needed for this rung have been generated (32 per batch)
        assert len(consumed) == math.ceil(result.num_images / 32)
    assert [r.num_images for r in results] == [70, 130, 200]
    assert len(consumed) == 7  # 200 images = 7 batches; the 8th (images 224-229) was never requested
    for r in results:
        (fresh,) = fid_at_rungs([gen[: r.num_images]], extractor, reference, groups=5)
        # same rows, same groups, different batch boundaries: equal to rounding (rungs > D = 64 rows, so
        # the covariance is full rank and the eigenvalue square roots do not amplify the rounding)
        assert r.fid == pytest.approx(fresh.fid, rel=1e-9)
        assert r.fid_err == pytest.approx(fresh.fid_err, rel=1e-6)
        assert r.interval[0] < r.fid_debiased < r.interval[1]


def test_rung_and_stream_errors(extractor, make_images):
    reference = compute_reference([make_images(50)], extractor)
    with pytest.raises(ValueError, match="strictly increasing"):
        list(fid_at_rungs([], extractor, reference, rungs=[10, 10]))
    with pytest.raises(ValueError, match="ended after 40 images, before reaching 100"):
        list(fid_at_rungs([make_images(40)], extractor, reference, rungs=[20, 100]))
    with pytest.raises(ValueError, match="uncertainty"):
        list(fid_at_rungs([], extractor, reference, uncertainty="bootstrap"))
    wrong_dim = ReferenceStats(np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="dimension 3"):
        list(fid_at_rungs([make_images(8)], extractor, wrong_dim))
    with pytest.raises(ValueError, match="reference feature rows"):
        list(fid_at_rungs([make_images(8)], extractor, reference, kid_pr=KIDPROptions(kid=True)))


def test_reservoir_is_bounded_ordered_and_deterministic():
    rows = np.arange(1000, dtype=np.float32)[:, None].repeat(2, 1)
    a, b = FeatureReservoir(100, seed=5), FeatureReservoir(100, seed=5)
    for chunk in np.array_split(rows, 7):
        a.update(chunk)
    b.update(rows)
    assert a.rows.shape == (100, 2) and a.seen == 1000
    assert np.all(np.diff(a.rows[:, 0]) > 0)  # a subset, in stream order
    np.testing.assert_array_equal(a.rows, b.rows)  # keys follow the stream, not the batching
    # uniform sample: the kept indices' mean is 499.5 with sd ~ 28.9 (= 288.7 * sqrt(0.9 / 100)); 5 sd
    assert abs(a.rows[:, 0].mean() - 499.5) < 5 * 28.9


def test_kid_pr_rows_are_bounded(extractor, make_images):
    reference = compute_reference([make_images(200, seed=6)], extractor, keep_features=80)
    assert reference.features.shape == (80, 64)
    options = KIDPROptions(kid=True, prc=True, max_rows=60, kid_subsets=5)
    (result,) = fid_at_rungs(make_images(150, seed=7).split(50), extractor, reference, kid_pr=options)
    assert result.extra["kid_pr_rows"] == (60, 80) and result.extra["kid_subset_size"] == 60


def test_error_bar_coverage_on_gaussian_features():
    """Claim: `interval` covers the n -> infinity FID with probability `level`.

    Features ~ N(mu, diag(s^2)) in D = 16, reference N(0, I) given exactly; true FID from the diagonal closed
    form. R = 400 independent streams of n = 1000 rows (10 groups), level 0.9: the hit count is
    Binomial(400, 0.9), sd 6, so it must lie within 360 +- 30 (5 sd, design.md). The plug-in FID's O(1/n)
    bias (~tr(S)/n = 0.017, a third of the standard error) makes an interval centred on `fid` undercover
    (measured ~66%), which this test also checks, so it can fail.
    """
    d, n, reps, level = 16, 1000, 400, 0.9
    rng = np.random.default_rng(2024)
    scales, mu = np.linspace(0.5, 1.5, d), np.full(d, 0.05)
    reference = ReferenceStats(np.zeros(d), np.eye(d))
    true_fid = float(np.sum(mu**2) + np.sum((scales - 1) ** 2))
    hits = naive_hits = 0
    for _ in range(reps):
        stream = FIDStream(reference, groups=10, level=level)
        for _ in range(4):
            stream.update(mu + rng.normal(size=(n // 4, d)) * scales)
        r = stream.result()
        hits += r.interval[0] <= true_fid <= r.interval[1]
        half = (r.interval[1] - r.interval[0]) / 2
        naive_hits += abs(r.fid - true_fid) <= half
    assert abs(hits - level * reps) <= 5 * math.sqrt(reps * level * (1 - level))
    assert naive_hits < level * reps - 5 * math.sqrt(reps * level * (1 - level))


def test_without_uncertainty_there_is_no_error_bar(extractor, make_images):
    reference = compute_reference([make_images(60, seed=8)], extractor)
    (r,) = fid_at_rungs([make_images(40, seed=9)], extractor, reference, uncertainty=None)
    assert r.num_images == 40 and math.isnan(r.fid_err) and r.fid > 0
    features = extract_features(extractor, make_images(40, seed=9))
    # 40 rows in D = 64: the covariance has rank 39, and the square roots of its ~1e-16 zero eigenvalues
    # (two algebraic paths: shifted sums vs Chan's centred merge) contribute ~1e-8 each
    assert r.fid == pytest.approx(frechet_distance(
        StreamingStats().update(features).mean, StreamingStats().update(features).cov,
        reference.mu, reference.sigma), rel=1e-7)
