"""KID and precision/recall on a bounded sample of feature rows, via torch-fidelity's metric functions.

Both metrics need feature rows of both sets, not just statistics. To keep memory bounded, a
``FeatureReservoir`` keeps at most ``capacity`` rows of a stream: a uniform random sample without
replacement (each row gets a key from a seeded generator; the ``capacity`` smallest keys are kept), in
stream order. When the stream is no longer than ``capacity`` every row is kept, so the metrics equal
torch-fidelity's ``calculate_metrics`` on the same images.

KID's paired path (:func:`kid_jackknife`): torch-fidelity's KID averages the unbiased MMD^2 over random
subsets, so its leave-one-group-out values would carry the subset draws' noise, multiplied by K - 1 in a
jackknife. The jackknife therefore uses the estimand those subsets estimate, on every kept row at once:

    KID_u = sum_{i != j} k(x_i, x_j) / (n (n-1)) + sum_{i != j} k(y_i, y_j) / (m (m-1))
            - 2 sum_{i, j} k(x_i, y_j) / (n m),          k(a, b) = (a . b / d + 1)^3

(torch-fidelity's polynomial kernel and "unbiased" estimator; equal to its KID when one subset holds every
row of both sets). Leaving out group g (kept row r in group r mod K; two settings on the same seeds keep the
same rows in the same order, so their groups are paired) needs only the K x K block sums of the generated
kernel matrix and K per-group cross sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _position_keys(positions: np.ndarray, seed: int) -> np.ndarray:
    """A uniform key in [0, 1) per stream position (splitmix64 of position + seed): the same row gets the
    same key however the stream is batched or split over ranks."""
    with np.errstate(over="ignore"):
        z = (positions.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
             + np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


class FeatureReservoir:
    """At most ``capacity`` feature rows of a stream, uniformly sampled, kept in stream order.

    Row keys are a hash of the row's position in the stream, so the kept sample depends only on the
    positions: reservoirs of disjoint parts of one stream (ranks) ``merge`` into the one-stream reservoir."""

    def __init__(self, capacity: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"reservoir capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.seed = int(seed)
        self.seen = 0
        self._index = np.zeros(0, dtype=np.int64)
        self._keys = np.zeros(0)
        self._rows: np.ndarray | None = None

    def update(self, features, positions: np.ndarray | None = None) -> FeatureReservoir:
        """Add rows ``[B, D]`` at stream ``positions`` (default: the next B positions)."""
        rows = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features,
                          dtype=np.float32)
        if rows.ndim != 2:
            raise ValueError(f"features must have shape [B, D], got {rows.shape}")
        index = (np.arange(self.seen, self.seen + rows.shape[0]) if positions is None
                 else np.asarray(positions, dtype=np.int64))
        self.seen += rows.shape[0]
        return self._keep(index, _position_keys(index, self.seed), rows)

    def _keep(self, index: np.ndarray, keys: np.ndarray, rows: np.ndarray) -> FeatureReservoir:
        index = np.concatenate([self._index, index])
        keys = np.concatenate([self._keys, keys])
        rows = rows if self._rows is None else np.concatenate([self._rows, rows])
        if rows.shape[0] > self.capacity:
            keep = np.argpartition(keys, self.capacity - 1)[: self.capacity]
            index, keys, rows = index[keep], keys[keep], rows[keep]
        order = np.argsort(index, kind="stable")
        self._index, self._keys, self._rows = index[order], keys[order], rows[order]
        return self

    def merge(self, other: FeatureReservoir) -> FeatureReservoir:
        """Fold in the reservoir of another, disjoint part of the same stream."""
        if other._rows is not None:
            self.seen += other.seen
            self._keep(other._index, other._keys, other._rows)
        return self

    @property
    def rows(self) -> np.ndarray:
        """The kept rows ``[min(seen, capacity), D]``, float32, in stream order."""
        if self._rows is None:
            raise ValueError("the reservoir is empty")
        return self._rows


@dataclass(frozen=True)
class KIDPROptions:
    """Options for KID (Binkowski et al. 2018) and precision/recall (Kynkaanniemi et al. 2019).

    ``max_rows`` bounds the generated feature rows kept in memory (reservoir); ``kid_subset_size`` is
    lowered to the number of rows available on either side when that is smaller.
    """

    kid: bool = False
    prc: bool = False
    max_rows: int = 10_000
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    prc_neighborhood: int = 3
    rng_seed: int = 2020
    kid_groups: int = 10  # seed groups of KID's jackknife (kid_jackknife); < 2: none

    def __post_init__(self) -> None:
        for name in ("max_rows", "kid_subsets", "kid_subset_size", "prc_neighborhood"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def any(self) -> bool:
        return self.kid or self.prc


def kid(gen_rows: np.ndarray, ref_rows: np.ndarray, options: KIDPROptions) -> dict[str, float]:
    """KID mean and spread over random subsets (torch-fidelity ``kid_features_to_metric``)."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    size = min(options.kid_subset_size, len(gen_rows), len(ref_rows))
    out = kid_features_to_metric(torch.from_numpy(gen_rows), torch.from_numpy(ref_rows),
                                 kid_subsets=options.kid_subsets, kid_subset_size=size,
                                 rng_seed=options.rng_seed, verbose=False)
    result = {"kid": out[KEY_METRIC_KID_MEAN], "kid_std": out[KEY_METRIC_KID_STD], "kid_subset_size": size}
    if options.kid_groups >= 2 and len(gen_rows) >= 2 * options.kid_groups and len(ref_rows) >= 2:
        full, loo = kid_jackknife(gen_rows, ref_rows, options.kid_groups)
        result.update(kid_full=full, kid_loo=loo)
    return result


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """torch-fidelity's default KID kernel (a . b / d + 1)^3, float64."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def kid_jackknife(gen_rows: np.ndarray, ref_rows: np.ndarray, groups: int = 10,
                  chunk: int = 1024) -> tuple[float, list[float]]:
    """(KID_u on all rows, the ``groups`` leave-one-group-out KID_u values), module docstring; row r of
    ``gen_rows`` is in group r mod ``groups``. Memory: ``chunk`` x n kernel entries at a time."""
    x, y = np.asarray(gen_rows, np.float64), np.asarray(ref_rows, np.float64)
    n, m = len(x), len(y)
    if groups < 2 or n < 2 * groups or m < 2:
        raise ValueError(f"KID's jackknife needs >= 2 rows per group and >= 2 reference rows, got n = {n}, "
                         f"groups = {groups}, m = {m}")
    group = np.arange(n) % groups
    onehot = np.eye(groups)[group]                          # [n, K]
    blocks = np.zeros((groups, groups))                     # sum_{i in a, j in b, i != j} k(x_i, x_j)
    cross = np.zeros(groups)                                # sum_{i in a, j} k(x_i, y_j)
    ref_sum = 0.0                                           # sum_{i != j} k(y_i, y_j)
    for lo in range(0, n, chunk):
        kxx = _poly_kernel(x[lo:lo + chunk], x)
        kxx[np.arange(len(kxx)), np.arange(lo, lo + len(kxx))] = 0.0
        blocks += onehot[lo:lo + chunk].T @ kxx @ onehot
        cross += onehot[lo:lo + chunk].T @ _poly_kernel(x[lo:lo + chunk], y).sum(axis=1)
    for lo in range(0, m, chunk):
        kyy = _poly_kernel(y[lo:lo + chunk], y)
        ref_sum += kyy.sum() - np.trace(kyy[:, lo:lo + chunk])
    ref_term = ref_sum / (m * (m - 1))

    def value(pairs: float, xy: float, size: int) -> float:
        return float(pairs / (size * (size - 1)) + ref_term - 2.0 * xy / (size * m))

    counts = np.bincount(group, minlength=groups)
    full = value(blocks.sum(), cross.sum(), n)
    loo = [value(blocks.sum() - 2 * blocks[g].sum() + blocks[g, g], cross.sum() - cross[g], n - counts[g])
           for g in range(groups)]
    return full, loo


def precision_recall(gen_rows: np.ndarray, ref_rows: np.ndarray, options: KIDPROptions) -> dict[str, float]:
    """Improved precision/recall with k-NN manifolds (torch-fidelity ``prc_features_to_metric``)."""
    from torch_fidelity.metric_prc import (
        KEY_METRIC_F_SCORE,
        KEY_METRIC_PRECISION,
        KEY_METRIC_RECALL,
        prc_features_to_metric,
    )

    out = prc_features_to_metric(torch.from_numpy(gen_rows), torch.from_numpy(ref_rows),
                                 prc_neighborhood=options.prc_neighborhood, prc_batch_size=10_000,
                                 save_cpu_ram=True, verbose=False)
    return {"precision": out[KEY_METRIC_PRECISION], "recall": out[KEY_METRIC_RECALL],
            "f_score": out[KEY_METRIC_F_SCORE]}


def kid_pr_metrics(gen_rows: np.ndarray, ref_rows: np.ndarray | None, options: KIDPROptions) -> dict:
    """The metrics asked for in ``options``, on the kept rows of both sets."""
    if not options.any:
        return {}
    if ref_rows is None:
        raise ValueError("KID and precision/recall need reference feature rows, but the reference statistics "
                         "hold only mu and sigma; build them with `edmbench ref --keep-features N`")
    out: dict = {"kid_pr_rows": (len(gen_rows), len(ref_rows))}
    if options.kid:
        out.update(kid(gen_rows, ref_rows, options))
    if options.prc:
        out.update(precision_recall(gen_rows, ref_rows, options))
    return out
