"""FID at rungs of image counts from one growing stream, with a grouped-jackknife error bar.

FID (Heusel et al. 2017) = |mu - mu_r|^2 + Tr(Sigma) + Tr(Sigma_r) - 2 Tr((Sigma Sigma_r)^(1/2)), float64.

Linear algebra. The reference is fixed for a study, so its symmetric square root A = Sigma_r^(1/2) is
computed once (``ReferenceStats.sqrt_sigma``). Sigma Sigma_r is similar to the symmetric PSD matrix
A Sigma A, so Tr((Sigma Sigma_r)^(1/2)) = sum_i sqrt(lambda_i(A Sigma A)), negative rounding-level
eigenvalues clipped to 0: one symmetric eigenvalue-only solve (``eigvalsh``) instead of torch-fidelity's
Schur ``sqrtm`` of the non-symmetric product. ``torch_fidelity_frechet_distance`` keeps torch-fidelity's
``fid_statistics_to_metric`` as the cross-check oracle (tests/metrics/test_fid_math.py, 1e-6 at D = 2048).

Moments. A stream keeps, per seed group, float64 centred moments of x = f - mu_r and of y = A x (rotated
at update time, one [B, D] x [D, D] product per batch): the count n, the mean m of x, the scatter trace
sum |x - m|^2 and the scatter matrix sum (y - A m)(y - A m)^T, folded batch by batch with Chan et al.'s
pairwise update. Then |mu - mu_r|^2 = |m|^2, Tr(Sigma) = trace / (n - 1) and A Sigma A = scatter / (n - 1).
Centred moments merge exactly (no cancellation against a far-away mean), also across the ranks of a sharded
evaluation: all-reduce n and n m, then each rank's scatter re-centred on the merged mean
(``edmbench.metrics.shard``).

Row mode. With N <= D images (a rung of 1k Inception features, D = 2048) Sigma has rank N - 1 and the
[D, D] route wastes work and accuracy: the stream keeps the N rotated rows y instead of the K scatters, and
for a subset S of m rows the nonzero eigenvalues of A Sigma_S A are those of Q^T Y_S Y_S^T Q / (m - 1),
Q an orthonormal basis of the vectors orthogonal to 1 (``centred_grams``: a Householder reflection). One
[N, N] Gram serves the full set and every leave-one-out set, so a rung costs N^2 D + (K + 1) eigenvalue
solves of size ~N: at N = 500, D = 2048 44x faster than the [D, D] route (benchmarks/bench_fid_math.py),
and equal to an SVD oracle to 1e-15 relative where the [D, D] route is off by 1e-8 (it sums the square
roots of D - N + 1 rounding-level eigenvalues). Past D images the rows are folded into the scatters once
(N D^2, what the batch-by-batch folds would have cost).

Error bar (grouped jackknife). The image with seed s belongs to group s mod K (K = ``groups``; a stream
without seeds uses the row's position), so two trials on the same seeds have the same groups and their
leave-one-out values pair element-wise. theta_k is the FID without group k, from the total moments with
group k's taken out (Chan's update run backwards: no re-merging of the other K - 1 groups). Then
  standard error  fid_err = sqrt((K-1)/K * sum_k (theta_k - mean theta)^2),
  bias-corrected  fid_debiased = K * fid - (K-1) * mean theta   (removes FID's O(1/n) bias),
and ``interval`` = fid_debiased +- t_{K-1} quantile * fid_err, which aims to cover the FID of the
generator's feature distribution against the reference statistics *as given* (n -> infinity) with
probability ``level``. It treats the reference as exact and assumes FID is well above its standard error
(near FID = 0 the estimator is not normal). Cost past D images: K extra solves per rung and K [D, D] scatters;
the rotation by A happens once per row at update time (n D^2 in all), so a rung costs K + 1 ``eigvalsh``
and no [D, D] x [D, D] product. The K + 1 solves are the floor of an exact jackknife; on CPU they run
concurrently, single-threaded each (``trace_roots``), on a GPU as one batched ``eigvalsh``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from edmbench.metrics.features import extract_features
from edmbench.metrics.kid_pr import FeatureReservoir, KIDPROptions, kid_pr_metrics
from edmbench.metrics.stats import ReferenceStats, StreamingStats, symmetric_sqrt

UNCERTAINTY_METHODS = ("jackknife", None)
FLUSH_ROWS = 1024  # feature rows buffered before they are folded into the group moments


def _check_dims(mu1: np.ndarray, mu2: np.ndarray) -> None:
    if np.shape(mu1) != np.shape(mu2):
        raise ValueError(f"feature dimensions differ: {np.shape(mu1)[0]} vs {np.shape(mu2)[0]} "
                         "(were both statistics made with the same extractor?)")


def torch_fidelity_frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                                    sigma2: np.ndarray) -> float:
    """FID by torch-fidelity's ``fid_statistics_to_metric`` (Schur sqrtm): the oracle for our own math."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    a = {"mu": np.asarray(mu1, np.float64), "sigma": np.asarray(sigma1, np.float64)}
    b = {"mu": np.asarray(mu2, np.float64), "sigma": np.asarray(sigma2, np.float64)}
    _check_dims(a["mu"], b["mu"])
    return float(fid_statistics_to_metric(a, b, verbose=False)[KEY_METRIC_FID])


def _trace_sqrt(eigenvalues: np.ndarray) -> float:
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *,
                     sqrt_sigma2: np.ndarray | None = None) -> float:
    """FID between two Gaussians' statistics (float64); ``sigma2`` is the reference. ``sqrt_sigma2``: its
    symmetric square root if already known (``ReferenceStats.sqrt_sigma``); then one FID costs two
    [D, D] products and one ``eigvalsh``."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    _check_dims(mu1, mu2)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root = symmetric_sqrt(sigma2) if sqrt_sigma2 is None else np.asarray(sqrt_sigma2, np.float64)
    inner = root @ sigma1 @ root
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2)
                 - 2 * _trace_sqrt(np.linalg.eigvalsh((inner + inner.T) / 2)))


def fid_from_stats(stats: StreamingStats, reference: ReferenceStats) -> float:
    return frechet_distance(stats.mean, stats.cov, reference.mu, reference.sigma,
                            sqrt_sigma2=reference.sqrt_sigma)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def trace_roots(inner: Sequence[np.ndarray], workers: int | None = None) -> np.ndarray:
    """sum_i sqrt(max(lambda_i, 0)) of each symmetric ``inner[j]`` (float64 CPU arrays, sizes may differ):
    LAPACK ``eigvalsh``, ``workers`` (default: the usable cores) at a time in threads, each single-threaded.

    The solves are independent, and LAPACK's tridiagonal reduction scales poorly over threads (on a busy
    machine a multi-threaded one is far slower still), so concurrent single-threaded solves give the best
    throughput; the BLAS thread limit is scoped to this call (threadpoolctl) and restored after it."""
    from threadpoolctl import threadpool_limits

    workers = max(1, min(len(inner), workers or usable_cores()))
    with threadpool_limits(limits=1, user_api="blas"):
        if workers == 1:
            eig = [np.linalg.eigvalsh(m) for m in inner]
        else:  # numpy releases the GIL inside LAPACK
            with ThreadPoolExecutor(workers) as pool:
                eig = list(pool.map(np.linalg.eigvalsh, inner))
    return np.array([_trace_sqrt(e) for e in eig])


def _outer(weight: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """weight_k d_k d_k^T for each row k of ``d``: [K, D, D]."""
    return weight[:, None, None] * d[:, :, None] * d[:, None, :]


@dataclass
class GroupMoments:
    """Float64 centred moments per seed group (see the module docstring): ``n`` [K], ``mean`` [K, D] of
    x = f - mu_r, ``trace`` [K] = sum |x - mean|^2, and either ``scatter`` [K, D, D] of y = Sigma_r^(1/2) x
    or, in row mode (few images), ``rows`` [N, D], every image's y, with its group in ``row_group`` [N]."""

    n: torch.Tensor
    mean: torch.Tensor
    trace: torch.Tensor
    scatter: torch.Tensor | None
    rows: torch.Tensor | None = None
    row_group: torch.Tensor | None = None

    @classmethod
    def zeros(cls, groups: int, dim: int, device: torch.device) -> GroupMoments:
        """Empty moments in row mode (the [K, D, D] scatters are allocated when the rows are folded)."""
        z = {"dtype": torch.float64, "device": device}
        return cls(torch.zeros(groups, **z), torch.zeros(groups, dim, **z), torch.zeros(groups, **z), None,
                   torch.zeros(0, dim, **z), torch.zeros(0, dtype=torch.int64, device=device))

    @property
    def num_images(self) -> int:
        return int(round(float(self.n.sum())))

    def fold_rows(self) -> None:
        """Leave row mode: each group's scatter sum (y - mean y)(y - mean y)^T from its rows."""
        groups, dim = self.mean.shape
        self.scatter = torch.zeros(groups, dim, dim, dtype=torch.float64, device=self.mean.device)
        for g in range(groups):
            yg = self.rows[self.row_group == g]
            if yg.shape[0]:
                yc = yg - yg.mean(0)
                self.scatter[g] = yc.T @ yc
        self.rows = self.row_group = None

    def total(self, root: torch.Tensor) -> GroupMoments:
        """All groups merged into one (K = 1): sum of scatters plus the between-group part."""
        n = self.n.sum()
        mean = (self.n[:, None] * self.mean).sum(0) / n
        delta = self.mean - mean
        scatter = None
        if self.scatter is not None:
            d = delta @ root
            scatter = (self.scatter.sum(0) + (d.T * self.n) @ d)[None]
        return GroupMoments(n[None], mean[None], (self.trace + self.n * (delta**2).sum(1)).sum()[None],
                            scatter, self.rows, self.row_group)

    def leave_one_out(self, total: GroupMoments, root: torch.Tensor) -> GroupMoments:
        """For every group k, the moments of all groups but k: Chan's merge solved for the rest."""
        rest = total.n - self.n
        mean = (total.n * total.mean - self.n[:, None] * self.mean) / rest[:, None]
        delta = self.mean - mean
        weight = self.n * rest / total.n
        scatter = None
        if self.scatter is not None:
            scatter = total.scatter - self.scatter - _outer(weight, delta @ root)
        return GroupMoments(rest, mean, total.trace - self.trace - weight * (delta**2).sum(1), scatter,
                            self.rows, self.row_group)


def centred_grams(rows: torch.Tensor, subsets: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """For each boolean row mask S (m rows), an [m - 1, m - 1] matrix whose eigenvalues are the nonzero
    ones of the scatter Y_S^T P Y_S / (m - 1), P = I - 1 1^T / m: Q^T (Y_S Y_S^T) Q / (m - 1) with Q an
    orthonormal basis of 1^perp (P Q = Q), from one [N, N] Gram for all subsets. Q is the Householder
    reflection H that maps 1 / sqrt(m) to e_1 without its first column: H G H's trailing block."""
    shifted = rows - rows.mean(0)  # any common shift leaves Q^T G Q unchanged; this one limits rounding
    gram = shifted @ shifted.T
    out = []
    for mask in subsets:
        sub = gram[mask][:, mask]
        m = sub.shape[0]
        v = torch.full((m,), m**-0.5, dtype=sub.dtype, device=sub.device)
        v[0] -= 1.0  # H = I - beta v v^T maps 1 / sqrt(m) to e_1
        beta = 2.0 / float(v @ v)
        p = beta * (sub @ v)
        reflected = sub - v[:, None] * p[None, :] - p[:, None] * v[None, :] + beta * float(v @ p) * (
            v[:, None] * v[None, :])
        out.append(reflected[1:, 1:] / (m - 1))
    return out


@dataclass
class JackknifeResult:
    """FID of all images and with each seed group left out: ``loo[k]`` omits the seeds s with s % K == k."""

    full: float
    loo: np.ndarray
    num_images: int
    groups: int


@dataclass
class RungResult:
    """FID (and optional KID / precision / recall) after the first ``num_images`` images of a stream.

    ``fid_loo`` holds the K leave-one-group-out FIDs (groups by seed; see the module docstring), so two
    trials on the same seeds can be compared with a paired jackknife."""

    num_images: int
    fid: float
    fid_err: float = math.nan
    fid_debiased: float = math.nan
    interval: tuple[float, float] = (math.nan, math.nan)
    level: float = math.nan
    nfe: float | None = None
    wall_time_s: float = math.nan
    fid_loo: tuple[float, ...] = ()
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(out.pop("extra"))
        out["fid_loo"] = list(self.fid_loo)
        return out


def jackknife_interval(full: float, leave_one_out: Sequence[float], level: float) -> dict:
    """Grouped-jackknife standard error, bias correction and t-interval (see the module docstring).

    For a paired difference of two trials on the same seeds pass ``full_a - full_b`` and
    ``loo_a - loo_b`` (same groups)."""
    from scipy.special import stdtrit  # Student t quantile; lighter to import than scipy.stats

    theta = np.asarray(leave_one_out, dtype=np.float64)
    k = len(theta)
    err = float(math.sqrt((k - 1) / k * float(((theta - theta.mean()) ** 2).sum())))
    debiased = float(k * full - (k - 1) * theta.mean())
    half = float(stdtrit(k - 1, 0.5 + level / 2)) * err
    return {"fid_err": err, "fid_debiased": debiased, "interval": (debiased - half, debiased + half),
            "level": level}


jackknife = jackknife_interval  # the earlier name


class ReferenceGeometry:
    """What every FID against one reference shares, on a device: mu_r, A = Sigma_r^(1/2), Tr(Sigma_r)."""

    def __init__(self, reference: ReferenceStats, device: torch.device, workers: int | None = None) -> None:
        self.workers = workers  # concurrent CPU eigenvalue solves (None: the usable cores)
        self.mu = torch.as_tensor(reference.mu, dtype=torch.float64, device=device)
        self.root = torch.as_tensor(reference.sqrt_sigma, dtype=torch.float64, device=device)
        self.trace = float(np.trace(reference.sigma))

    def roots(self, inner: torch.Tensor | Sequence[torch.Tensor]) -> np.ndarray:
        """Tr(M^(1/2)) of each symmetric PSD matrix: one ``eigvalsh`` each (batched on a GPU)."""
        if inner[0].device.type == "cpu":  # LAPACK through numpy: about 2x torch's CPU eigvalsh here
            return trace_roots([m.numpy() for m in inner], self.workers)
        if isinstance(inner, torch.Tensor):  # equal sizes: one batched solve on the device
            return torch.linalg.eigvalsh(inner).clamp_min(0).sqrt().sum(-1).cpu().numpy()
        return np.array([float(torch.linalg.eigvalsh(m).clamp_min(0).sqrt().sum()) for m in inner])

    def distances(self, moments: GroupMoments, roots: np.ndarray) -> np.ndarray:
        """|m|^2 + Tr(Sigma) + Tr(Sigma_r) - 2 Tr((A Sigma A)^(1/2)) per set of moments."""
        trace = moments.trace / (moments.n - 1)
        return ((moments.mean**2).sum(-1) + trace).cpu().numpy() + self.trace - 2 * roots

    def jackknife(self, moments: GroupMoments) -> JackknifeResult:
        """FID of all groups and, by downdating, of all groups but each one (K + 1 solves): of the [D, D]
        matrices A Sigma A, or in row mode of the [m - 1, m - 1] projected Grams of the rows: (m / D)^3 the
        cost, and no structurally zero eigenvalue (whose rounding-level square root would enter the sum)
        where A Sigma A has D - m + 1."""
        total = moments.total(self.root)
        groups = moments.n.shape[0]
        loo = moments.leave_one_out(total, self.root) if groups > 1 else None
        parts = [total] if loo is None else [total, loo]
        stats = GroupMoments(*(torch.cat([getattr(p, name) for p in parts])
                               for name in ("n", "mean", "trace")), None)
        if float(stats.n.min()) < 2:
            raise ValueError(f"a covariance needs at least 2 feature rows; with {moments.num_images} images "
                             f"in {groups} seed groups a set has {int(stats.n.min())} (use fewer groups or "
                             "more images)")
        if moments.scatter is None:
            masks = [torch.ones_like(moments.row_group, dtype=torch.bool)]
            if loo is not None:
                masks += [moments.row_group != g for g in range(groups)]
            roots = self.roots(centred_grams(moments.rows, masks))
        else:
            roots = self.roots(torch.cat([p.scatter for p in parts]) / (stats.n - 1)[:, None, None])
        values = self.distances(stats, roots)
        return JackknifeResult(float(values[0]), values[1:], moments.num_images, groups)


def _fold(n, mean, trace, scatter, rows, group, mu, root):
    """Merge rows into their groups' moments in place, Chan et al.'s pairwise update (numpy arrays on CPU,
    torch tensors on a GPU). Returns y = A (f - mu_r) of the rows (the scatter's update; row mode keeps
    them); ``scatter`` None: row mode, only n, mean and trace are updated."""
    x = rows - mu
    y = x @ root
    for g in sorted({int(v) for v in group.tolist()}):
        select = group == g
        xg = x[select]
        count = xg.shape[0]
        batch_mean = xg.mean(0)
        centred = xg - batch_mean
        total = n[g] + count
        delta = batch_mean - mean[g]
        weight = float(n[g]) * count / float(total)
        mean[g] += delta * (count / float(total))
        trace[g] += (centred * centred).sum() + weight * (delta * delta).sum()
        if scatter is not None:
            yg = y[select]
            yc = yg - yg.mean(0)
            d = delta @ root
            scatter[g] += yc.T @ yc + weight * (d[:, None] * d[None, :])
        n[g] = total
    return y


class FIDStream:
    """Features in, FID estimates out: float64 group moments (seed s -> group s mod K) plus optional rows.

    While at most ``row_limit`` images (default: the feature dimension D) have been seen, the stream keeps
    every image's rotated features instead of K [D, D] scatters (row mode: N D floats instead of K D^2, and
    rungs solve [N, N] Gram matrices); past it the rows are folded into the scatters once."""

    def __init__(self, reference: ReferenceStats, *, groups: int = 10, level: float = 0.95,
                 kid_pr: KIDPROptions | None = None, device: str | torch.device | None = None,
                 row_limit: int | None = None) -> None:
        if groups < 1:
            raise ValueError(f"groups must be >= 1 (1 = no error bar), got {groups}")
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        self.reference, self.level = reference, level
        self.device = torch.device(device or "cpu")
        self.geometry = ReferenceGeometry(reference, self.device)
        self.moments = GroupMoments.zeros(groups, reference.dim, self.device)
        self.row_limit = reference.dim if row_limit is None else row_limit
        self.kid_pr = kid_pr or KIDPROptions()
        self.reservoir = FeatureReservoir(self.kid_pr.max_rows) if self.kid_pr.any else None
        self.n = 0  # rows seen
        self._buffer: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._buffered = 0

    @property
    def groups(self) -> int:
        return int(self.moments.n.shape[0])

    def update(self, features: torch.Tensor | np.ndarray, seeds: Sequence[int] | None = None,
               positions: Sequence[int] | None = None) -> None:
        """Add feature rows ``[B, D]``. ``seeds`` choose the groups (default: ``positions``); ``positions``
        are the rows' places in the whole evaluation (default: the running count), which orders and keys
        the KID/PR reservoir. Rows are buffered (at most ``FLUSH_ROWS``) and folded in blocks."""
        array = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features)
        rows = torch.as_tensor(array, dtype=torch.float64)
        if rows.ndim != 2 or rows.shape[1] != self.reference.dim:
            raise ValueError(f"features have shape {tuple(rows.shape)}, but the reference statistics have "
                             f"dimension {self.reference.dim} (different extractor?)")
        if not torch.isfinite(rows).all():
            raise ValueError("features contain NaN or infinity; the extractor or the images are broken")
        count = rows.shape[0]
        if positions is None:
            positions = range(self.n, self.n + count)
        keys = torch.as_tensor(list(seeds if seeds is not None else positions), dtype=torch.int64)
        if keys.shape != (count,):
            raise ValueError(f"got {keys.shape[0]} seeds for {count} feature rows")
        self._buffer.append((rows, keys))
        if self.reservoir is not None:
            self.reservoir.update(rows.numpy(), np.asarray(list(positions), dtype=np.int64))
        self.n += count
        self._buffered += count
        if self._buffered >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Fold the buffered rows into the group moments."""
        if not self._buffer:
            return
        rows = torch.cat([r for r, _ in self._buffer])
        group = torch.cat([k for _, k in self._buffer]) % self.groups
        self._buffer, self._buffered = [], 0
        m = self.moments
        if self.device.type == "cpu":  # numpy views of the same moments: far less per-op overhead than torch
            arrays = (m.n, m.mean, m.trace, m.scatter, rows, group, self.geometry.mu, self.geometry.root)
            y = torch.from_numpy(_fold(*(None if t is None else t.numpy() for t in arrays)))
        else:
            y = _fold(m.n, m.mean, m.trace, m.scatter, rows.to(self.device), group.to(self.device),
                      self.geometry.mu, self.geometry.root)
        if m.scatter is None:
            m.rows = torch.cat([m.rows, y])
            m.row_group = torch.cat([m.row_group, group.to(self.device)])
            if m.num_images > self.row_limit:
                m.fold_rows()

    def jackknife(self, moments: GroupMoments | None = None) -> JackknifeResult:
        """FID of everything seen and each leave-one-group-out FID (``moments``: e.g. merged over ranks)."""
        self.flush()
        return self.geometry.jackknife(self.moments if moments is None else moments)

    def result(self, moments: GroupMoments | None = None,
               reservoir: FeatureReservoir | None = None) -> RungResult:
        """FID of everything seen so far, with the jackknife error bar when ``groups`` > 1 and every group
        has an image. ``moments`` / ``reservoir`` replace the stream's own (merged over ranks)."""
        self.flush()
        moments = self.moments if moments is None else moments
        num_images = moments.num_images
        if num_images < 2:
            raise ValueError(f"a covariance needs at least 2 feature rows, have {num_images}")
        counts = moments.n.cpu().numpy()
        if self.groups > 1 and counts.min() > 0 and num_images - counts.max() >= 2:
            jack = self.geometry.jackknife(moments)
            out = RungResult(num_images=num_images, fid=jack.full, fid_loo=tuple(float(v) for v in jack.loo))
            for key, value in jackknife_interval(jack.full, jack.loo, self.level).items():
                setattr(out, key, value)
        else:
            total = moments.total(self.geometry.root)
            out = RungResult(num_images=num_images, fid=self.geometry.jackknife(total).full)
        reservoir = self.reservoir if reservoir is None else reservoir
        if reservoir is not None:
            out.extra = kid_pr_metrics(reservoir.rows, self.reference.features, self.kid_pr)
        return out


def _check_rungs(rungs: Sequence[int] | None) -> list[int] | None:
    if rungs is None:
        return None
    rungs = [int(r) for r in rungs]
    if not rungs or rungs[0] < 2 or any(b <= a for a, b in zip(rungs, rungs[1:], strict=False)):
        raise ValueError(f"rungs must be strictly increasing image counts >= 2, got {rungs}")
    return rungs


def fid_at_rungs(batches: Iterable, extractor: torch.nn.Module, reference: ReferenceStats,
                 rungs: Sequence[int] | None = None, *, uncertainty: str | None = "jackknife",
                 groups: int = 10, level: float = 0.95, kid_pr: KIDPROptions | None = None,
                 device: str | torch.device | None = None, shard=None, plan=None) -> Iterator[RungResult]:
    """Yield a ``RungResult`` when the stream reaches each rung (image count) in ``rungs``.

    ``batches`` yields ``ImageBatch``es (their seeds choose the jackknife groups) or uint8 ``[B, C, H, W]``
    tensors (groups by position). It is consumed lazily and no further than the last rung, so scoring 10k
    images after 2k costs only the 8k new ones. With ``rungs=None`` there is one result at the end of the
    stream. ``uncertainty=None`` skips the error bar. ``device`` holds the float64 moments and runs the
    eigenvalue solves (default CPU).

    Sharded (``shard``: an ``edmbench.metrics.shard.Shard``, ``plan`` its ``ShardPlan``): ``batches`` are this
    rank's images (``plan.seeds``), ``rungs`` are global image counts, and every rank yields the same merged
    results (see ``edmbench.metrics.shard``).
    """
    if uncertainty not in UNCERTAINTY_METHODS:
        raise ValueError(f"unknown uncertainty {uncertainty!r}; valid: {UNCERTAINTY_METHODS}")
    rungs = _check_rungs(rungs)
    stream = FIDStream(reference, groups=groups if uncertainty else 1, level=level, kid_pr=kid_pr,
                       device=device)
    if shard is not None:
        if rungs is None or plan is None:
            raise ValueError("a sharded evaluation needs its rungs (the last = all images) and its plan")
        yield from _sharded_rungs(batches, extractor, stream, rungs, plan, shard)
        return
    pending = list(rungs) if rungs is not None else []
    start, nfe_total = time.perf_counter(), 0.0
    for batch in batches:
        images = getattr(batch, "images", batch)
        seeds = getattr(batch, "seeds", None)
        nfe = float(getattr(batch, "nfe", 0) or 0)
        features = extract_features(extractor, images)
        while features.shape[0]:
            take = features.shape[0] if not pending else min(features.shape[0], pending[0] - stream.n)
            stream.update(features[:take], None if seeds is None else list(seeds[:take]))
            nfe_total += nfe * take
            features = features[take:]
            seeds = None if seeds is None else seeds[take:]
            if pending and stream.n == pending[0]:
                pending.pop(0)
                yield _finish(stream.result(), nfe_total, stream.n, start)
                if not pending and rungs is not None:
                    return
    if rungs is None and stream.n >= 2:
        yield _finish(stream.result(), nfe_total, stream.n, start)
    elif rungs is None or pending:
        missing = pending[0] if pending else 2
        raise ValueError(f"the image stream ended after {stream.n} images, before reaching {missing}")


def _local_rows(batches: Iterable, extractor: torch.nn.Module) -> Iterator[tuple[torch.Tensor, list, float]]:
    """(features, seeds, nfe per image) per batch."""
    for batch in batches:
        features = extract_features(extractor, getattr(batch, "images", batch))
        yield features, list(batch.seeds), float(getattr(batch, "nfe", 0) or 0)


def _sharded_rungs(batches: Iterable, extractor: torch.nn.Module, stream: FIDStream, rungs: list[int],
                   plan, shard) -> Iterator[RungResult]:
    """Each rank folds its rows up to its local count of every rung, then the ranks merge (all-reduce the
    moments, gather the reservoirs), rank 0 computes and broadcasts the result, and after each yield rank 0
    broadcasts whether its consumer wants more (a pruned trial stops every rank)."""
    source, carry, nfe_total = _local_rows(batches, extractor), None, 0.0
    start = time.perf_counter()
    for rung, target in zip(rungs, plan.local_rungs, strict=True):
        while stream.n < target:
            features, seeds, nfe = carry if carry is not None else next(source, (None, None, None))
            carry = None
            if features is None:
                raise ValueError(f"rank {shard.rank}: the image stream ended after {stream.n} images, before "
                                 f"its share {target} of rung {rung}")
            take = min(features.shape[0], target - stream.n)
            stream.update(features[:take], seeds[:take], plan.positions[stream.n:stream.n + take])
            nfe_total += nfe * take
            if take < features.shape[0]:
                carry = (features[take:], seeds[take:], nfe)
        try:
            yield _merged_result(stream, shard, nfe_total, start)
        except GeneratorExit:  # rank 0's consumer stopped here (a pruned trial): tell the others
            if shard.is_main:
                shard.broadcast_object("stop")
            raise
        if shard.broadcast_object("continue" if shard.is_main else None) != "continue":
            return


def merge_moments(stream: FIDStream, shard) -> GroupMoments:
    """Every rank's group moments merged exactly: all-reduce n and n * mean, then each rank's trace and
    scatter re-centred on the merged means (Chan's update with K groups at once), all-reduced. While the
    merged count is within the row limit every rank is in row mode (its own count is no larger) and the
    rows are gathered instead; past it, ranks still in row mode fold their rows first."""
    local, root = stream.moments, stream.geometry.root
    n, weighted = shard.all_reduce_sum([local.n, local.n[:, None] * local.mean])
    mean = weighted / n.clamp_min(1)[:, None]
    delta = local.mean - mean
    row_mode = int(round(float(n.sum()))) <= stream.row_limit
    if not row_mode and local.scatter is None:
        local.fold_rows()
    parts = [local.trace + local.n * (delta**2).sum(1)]
    if not row_mode:
        parts.append(local.scatter + _outer(local.n, delta @ root))
    trace, *scatter = shard.all_reduce_sum(parts)
    if not row_mode:
        return GroupMoments(n, mean, trace, scatter[0])
    gathered = shard.gather_objects((local.rows.cpu(), local.row_group.cpu()))
    return GroupMoments(n, mean, trace, None, torch.cat([r for r, _ in gathered]).to(local.rows.device),
                        torch.cat([g for _, g in gathered]).to(local.rows.device))


def _merged_result(stream: FIDStream, shard, nfe_total: float, start: float) -> RungResult:
    stream.flush()
    merged = merge_moments(stream, shard)
    (nfe_sum,) = shard.all_reduce_sum([torch.tensor([nfe_total], dtype=torch.float64)])
    reservoirs = shard.gather_objects(stream.reservoir) if stream.reservoir is not None else None
    result = None
    if shard.is_main:
        reservoir = None
        if reservoirs is not None:
            reservoir = FeatureReservoir(stream.reservoir.capacity, stream.reservoir.seed)
            for part in reservoirs:
                reservoir.merge(part)
        result = _finish(stream.result(merged, reservoir), float(nfe_sum[0]),
                         merged.num_images, start)
    return shard.broadcast_object(result)


def _finish(result: RungResult, nfe_total: float, n: int, start: float) -> RungResult:
    result.wall_time_s = time.perf_counter() - start
    result.nfe = nfe_total / n if nfe_total else None
    return result
