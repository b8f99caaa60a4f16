"""Streaming statistics against batch formulas, and the EDM reference .npz format."""

import numpy as np
import pytest
import torch

from edmbench.metrics.stats import ReferenceStats, StreamingStats, load_reference, save_reference


def _features(n=1000, d=12, seed=0):
    # mean far from 0 (like Inception features) stresses cancellation in the covariance
    rng = np.random.default_rng(seed)
    return 5.0 + rng.normal(size=(n, d)) @ rng.normal(size=(d, d))


@pytest.mark.parametrize("splits", [[1000], [1, 999], [7, 300, 13, 680], [1] * 10 + [990], [500, 0, 500]])
def test_streaming_equals_batch_for_any_split(splits):
    rows = _features()
    stats = StreamingStats()
    start = 0
    for size in splits:
        stats.update(torch.from_numpy(rows[start:start + size]))
        start += size
    # oracle: numpy's two-pass mean and unbiased covariance (EDM's formula), float64
    assert stats.n == 1000
    np.testing.assert_allclose(stats.mean, rows.mean(axis=0), rtol=0, atol=1e-10)
    np.testing.assert_allclose(stats.cov, np.cov(rows, rowvar=False), rtol=0, atol=1e-10)


def test_merge_is_order_free_and_copy_is_independent():
    rows = _features(300, 5)
    a, b = StreamingStats().update(rows[:100]), StreamingStats().update(rows[100:])
    ab, ba = a.copy().merge(b), b.copy().merge(a)
    np.testing.assert_allclose(ab.cov, ba.cov, rtol=0, atol=1e-12)
    assert a.n == 100  # copy() left a untouched


def test_covariance_needs_two_rows_and_matching_dims():
    stats = StreamingStats().update(np.ones((1, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        _ = stats.cov
    with pytest.raises(ValueError, match="dimension"):
        stats.update(np.ones((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        StreamingStats().update(np.array([[np.nan, 1.0]]))


def test_npz_round_trip_edm_keys_only(tmp_path):
    rows = _features(50, 4)
    ref = StreamingStats().update(rows).to_reference()
    path = tmp_path / "ref.npz"
    # an EDM file: exactly mu and sigma, float64
    np.savez(path, mu=ref.mu, sigma=ref.sigma)
    back = load_reference(path)
    assert back.mu.dtype == back.sigma.dtype == np.float64
    np.testing.assert_array_equal(back.mu, ref.mu)
    np.testing.assert_array_equal(back.sigma, ref.sigma)
    assert back.n is None and back.features is None


def test_npz_round_trip_with_optional_keys(tmp_path):
    rows = _features(50, 4)
    ref = StreamingStats().update(rows).to_reference({"dataset": "x", "extractor": "random-conv"})
    ref.features = rows[:10].astype(np.float32)
    save_reference(tmp_path / "r.npz", ref)
    with np.load(tmp_path / "r.npz") as data:
        assert set(data.files) == {"mu", "sigma", "n", "features", "provenance"}
    back = load_reference(tmp_path / "r.npz")
    assert back.n == 50 and back.provenance["extractor"] == "random-conv"
    np.testing.assert_array_equal(back.features, ref.features)
    np.testing.assert_array_equal(back.sigma, ref.sigma)


@pytest.mark.parametrize("arrays, message", [
    ({"mu": np.zeros(3)}, r"missing \['sigma'\]"),
    ({"mu": np.zeros(3), "sigma": np.eye(3), "extra": np.zeros(1)}, r"unknown \['extra'\]"),
    ({"m": np.zeros(3), "s": np.eye(3)}, "missing"),
    ({"mu": np.zeros(3), "sigma": np.eye(4)}, r"shape \(3, 3\)"),
    ({"mu": np.zeros((3, 1)), "sigma": np.eye(3)}, r"shape \(D,\)"),
    ({"mu": np.array([0.0, np.nan, 0.0]), "sigma": np.eye(3)}, "finite"),
    ({"mu": np.zeros(3), "sigma": np.triu(np.ones((3, 3)))}, "symmetric"),
])
def test_malformed_npz_is_refused(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        load_reference(path)


def test_not_an_npz_and_pickled_arrays_are_refused(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    # messages from edmbench.npzio's bounded reader (CheckpointError is a ValueError)
    with pytest.raises(ValueError, match="not a readable reference statistics .npz"):
        load_reference(junk)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, mu=np.array([object()], dtype=object), sigma=np.eye(1))
    with pytest.raises(ValueError, match="dtype object refused"):
        load_reference(pickled)
    with pytest.raises(FileNotFoundError):
        load_reference(tmp_path / "absent.npz")


def test_reference_stats_validate_on_construction():
    with pytest.raises(ValueError, match="features"):
        ReferenceStats(np.zeros(2), np.eye(2), features=np.zeros((4, 3)))
