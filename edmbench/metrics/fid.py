"""FID at rungs of image counts from one growing stream, with a grouped-jackknife error bar.

FID (Heusel et al. 2017) = |mu - mu_r|^2 + Tr(Sigma) + Tr(Sigma_r) - 2 Tr((Sigma Sigma_r)^(1/2)), float64.

Linear algebra. The reference is fixed for a study, so its symmetric square root A = Sigma_r^(1/2) is
computed once (``ReferenceStats.sqrt_sigma``). Sigma Sigma_r is similar to the symmetric PSD matrix
A Sigma A, so Tr((Sigma Sigma_r)^(1/2)) = sum_i sqrt(lambda_i(A Sigma A)), negative rounding-level
eigenvalues clipped to 0: one symmetric eigenvalue-only solve (``eigvalsh``) instead of torch-fidelity's
Schur ``sqrtm`` of the non-symmetric product. ``torch_fidelity_frechet_distance`` keeps torch-fidelity's
``fid_statistics_to_metric`` as the cross-check oracle (tests/metrics/test_fid_math.py, 1e-6 at D = 2048).

Sums. A stream keeps, per seed group, float64 sums of x = f - mu_r and of y y^T with y = A x (rotated at
update time, one [B, D] x [D, D] product per batch): n, sum x, sum |x|^2 and sum y y^T. Then
|mu - mu_r|^2 = |sum x / n|^2, Tr(Sigma) = (sum |x|^2 - |sum x|^2 / n) / (n - 1) and
A Sigma A = (sum y y^T - (A sum x)(A sum x)^T / n) / (n - 1). The sums are additive, so ranks of a sharded
evaluation merge them exactly by all-reduce (``edmbench.metrics.shard``).

Error bar (grouped jackknife). The image with seed s belongs to group s mod K (K = ``groups``; a stream
without seeds uses the row's position), so two trials on the same seeds have the same groups and their
leave-one-out values pair element-wise. theta_k is the FID without group k, from the total sums minus
group k's sums (downdating: no re-merging of the other K - 1 groups). Then
  standard error  fid_err = sqrt((K-1)/K * sum_k (theta_k - mean theta)^2),
  bias-corrected  fid_debiased = K * fid - (K-1) * mean theta   (removes FID's O(1/n) bias),
and ``interval`` = fid_debiased +- t_{K-1} quantile * fid_err, which aims to cover the FID of the
generator's feature distribution against the reference statistics *as given* (n -> infinity) with
probability ``level``. It treats the reference as exact and assumes FID is well above its standard error
(near FID = 0 the estimator is not normal). Cost: K extra eigenvalue solves per rung and K [D, D] sums.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from edmbench.metrics.features import extract_features
from edmbench.metrics.kid_pr import FeatureReservoir, KIDPROptions, kid_pr_metrics
from edmbench.metrics.stats import ReferenceStats, StreamingStats, symmetric_sqrt

UNCERTAINTY_METHODS = ("jackknife", None)
FLUSH_ROWS = 1024  # feature rows buffered before they are folded into the group sums


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


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """FID between two Gaussians' statistics (float64); ``sigma2`` is the reference (its root is taken)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    _check_dims(mu1, mu2)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root = symmetric_sqrt(sigma2)
    inner = root @ sigma1 @ root
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2)
                 - 2 * _trace_sqrt(np.linalg.eigvalsh((inner + inner.T) / 2)))


def fid_from_stats(stats: StreamingStats, reference: ReferenceStats) -> float:
    return frechet_distance(stats.mean, stats.cov, reference.mu, reference.sigma)


@dataclass
class GroupSums:
    """Float64 sums per seed group (see the module docstring): ``n`` [K], ``sum_x`` [K, D] with
    x = f - mu_r, ``sum_x2`` [K] = sum |x|^2, ``sum_yy`` [K, D, D] with y = Sigma_r^(1/2) x."""

    n: torch.Tensor
    sum_x: torch.Tensor
    sum_x2: torch.Tensor
    sum_yy: torch.Tensor

    @classmethod
    def zeros(cls, groups: int, dim: int, device: torch.device) -> GroupSums:
        z = {"dtype": torch.float64, "device": device}
        return cls(torch.zeros(groups, **z), torch.zeros(groups, dim, **z), torch.zeros(groups, **z),
                   torch.zeros(groups, dim, dim, **z))

    def tensors(self) -> list[torch.Tensor]:
        return [self.n, self.sum_x, self.sum_x2, self.sum_yy]

    def clone(self) -> GroupSums:
        return GroupSums(*(t.clone() for t in self.tensors()))

    @property
    def num_images(self) -> int:
        return int(round(float(self.n.sum())))


@dataclass
class JackknifeResult:
    """FID of all images and with each seed group left out: ``loo[k]`` omits the seeds s with s % K == k."""

    full: float
    loo: np.ndarray
    num_images: int
    groups: int


@dataclass
class RungResult:
    """FID (and optional KID / precision / recall) after the first ``n`` images of a stream.

    ``fid_loo`` holds the K leave-one-group-out FIDs (groups by seed; see the module docstring), so two
    trials on the same seeds can be compared with a paired jackknife."""

    n: int
    fid: float
    fid_err: float = math.nan
    fid_debiased: float = math.nan
    interval: tuple[float, float] = (math.nan, math.nan)
    level: float = math.nan
    nfe: float | None = None
    wall_time: float = math.nan
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

    def __init__(self, reference: ReferenceStats, device: torch.device) -> None:
        self.mu = torch.as_tensor(reference.mu, dtype=torch.float64, device=device)
        self.root = torch.as_tensor(reference.sqrt_sigma, dtype=torch.float64, device=device)
        self.trace = float(np.trace(reference.sigma))

    def fids(self, n: torch.Tensor, sum_x: torch.Tensor, sum_x2: torch.Tensor,
             sum_yy: torch.Tensor) -> np.ndarray:
        """FIDs of a batch of sums ([B], [B, D], [B], [B, D, D]): one ``eigvalsh`` each (batched on GPU)."""
        diff2 = (sum_x**2).sum(-1) / n**2
        trace = (sum_x2 - (sum_x**2).sum(-1) / n) / (n - 1)
        t = sum_x @ self.root
        inner = (sum_yy - t[:, :, None] * t[:, None, :] / n[:, None, None]) / (n - 1)[:, None, None]
        if inner.device.type == "cpu":  # LAPACK through numpy: about 2x torch's CPU eigvalsh here
            roots = np.array([_trace_sqrt(np.linalg.eigvalsh(m)) for m in inner.numpy()])
        else:
            roots = torch.linalg.eigvalsh(inner).clamp_min(0).sqrt().sum(-1).cpu().numpy()
        return (diff2 + trace).cpu().numpy() + self.trace - 2 * roots

    def jackknife(self, sums: GroupSums) -> JackknifeResult:
        """FID of the total sums and, by downdating, of the total minus each group (K + 1 solves)."""
        total = [t.sum(0, keepdim=True) for t in sums.tensors()]
        groups = sums.n.shape[0]
        if groups == 1:
            full = self.fids(*total)
            return JackknifeResult(float(full[0]), np.zeros(0), sums.num_images, 1)
        stacked = [torch.cat([tot, tot - part]) for tot, part in zip(total, sums.tensors(), strict=True)]
        values = self.fids(*stacked)
        return JackknifeResult(float(values[0]), values[1:], sums.num_images, groups)


def _fold(n, sum_x, sum_x2, sum_yy, rows, group, mu, root) -> None:
    """Add rows to their groups' sums in place (numpy arrays on CPU, torch tensors on a GPU)."""
    x = rows - mu
    y = x @ root
    for g in sorted({int(v) for v in group.tolist()}):
        mask = group == g
        xg, yg = x[mask], y[mask]
        n[g] += int(mask.sum())
        sum_x[g] += xg.sum(0)
        sum_x2[g] += (xg * xg).sum()
        sum_yy[g] += yg.T @ yg


class FIDStream:
    """Features in, FID estimates out: float64 group sums (seed s -> group s mod K) plus optional rows."""

    def __init__(self, reference: ReferenceStats, *, groups: int = 10, level: float = 0.95,
                 kid_pr: KIDPROptions | None = None, device: str | torch.device | None = None) -> None:
        if groups < 1:
            raise ValueError(f"groups must be >= 1 (1 = no error bar), got {groups}")
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        self.reference, self.level = reference, level
        self.device = torch.device(device or "cpu")
        self.geometry = ReferenceGeometry(reference, self.device)
        self.sums = GroupSums.zeros(groups, reference.dim, self.device)
        self.kid_pr = kid_pr or KIDPROptions()
        self.reservoir = FeatureReservoir(self.kid_pr.max_rows) if self.kid_pr.any else None
        self.n = 0  # rows seen
        self._buffer: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._buffered = 0

    @property
    def groups(self) -> int:
        return int(self.sums.n.shape[0])

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
        """Fold the buffered rows into the group sums."""
        if not self._buffer:
            return
        rows = torch.cat([r for r, _ in self._buffer])
        group = torch.cat([k for _, k in self._buffer]) % self.groups
        self._buffer, self._buffered = [], 0
        if self.device.type == "cpu":  # numpy views of the same sums: far less per-op overhead than torch
            _fold(*(t.numpy() for t in (*self.sums.tensors(), rows, group, self.geometry.mu,
                                        self.geometry.root)))
        else:
            _fold(*self.sums.tensors(), rows.to(self.device), group.to(self.device), self.geometry.mu,
                  self.geometry.root)

    def jackknife(self, sums: GroupSums | None = None) -> JackknifeResult:
        """FID of everything seen and each leave-one-group-out FID (``sums``: e.g. merged over ranks)."""
        self.flush()
        return self.geometry.jackknife(self.sums if sums is None else sums)

    def result(self, sums: GroupSums | None = None, reservoir: FeatureReservoir | None = None) -> RungResult:
        """FID of everything seen so far, with the jackknife error bar when ``groups`` > 1 and every group
        has an image. ``sums`` / ``reservoir`` replace the stream's own (merged over ranks)."""
        self.flush()
        sums = self.sums if sums is None else sums
        num_images = sums.num_images
        if num_images < 2:
            raise ValueError(f"a covariance needs at least 2 feature rows, have {num_images}")
        counts = sums.n.cpu().numpy()
        if self.groups > 1 and counts.min() > 0 and num_images - counts.max() >= 2:
            jack = self.geometry.jackknife(sums)
            out = RungResult(n=num_images, fid=jack.full, fid_loo=tuple(float(v) for v in jack.loo))
            for key, value in jackknife_interval(jack.full, jack.loo, self.level).items():
                setattr(out, key, value)
        else:
            total = [t.sum(0, keepdim=True) for t in sums.tensors()]
            out = RungResult(n=num_images, fid=float(self.geometry.fids(*total)[0]))
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
                 device: str | torch.device | None = None) -> Iterator[RungResult]:
    """Yield a ``RungResult`` when the stream reaches each rung (image count) in ``rungs``.

    ``batches`` yields ``ImageBatch``es (their seeds choose the jackknife groups) or uint8 ``[B, C, H, W]``
    tensors (groups by position). It is consumed lazily and no further than the last rung, so scoring 10k
    images after 2k costs only the 8k new ones. With ``rungs=None`` there is one result at the end of the
    stream. ``uncertainty=None`` skips the error bar. ``device`` holds the float64 sums and runs the
    eigenvalue solves (default CPU).
    """
    if uncertainty not in UNCERTAINTY_METHODS:
        raise ValueError(f"unknown uncertainty {uncertainty!r}; valid: {UNCERTAINTY_METHODS}")
    rungs = _check_rungs(rungs)
    stream = FIDStream(reference, groups=groups if uncertainty else 1, level=level, kid_pr=kid_pr,
                       device=device)
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


def _finish(result: RungResult, nfe_total: float, n: int, start: float) -> RungResult:
    result.wall_time = time.perf_counter() - start
    result.nfe = nfe_total / n if nfe_total else None
    return result
