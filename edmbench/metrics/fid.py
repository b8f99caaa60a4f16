"""FID at rungs of image counts from one growing stream, with a grouped-jackknife error bar.

FID (Heusel et al. 2017) = |mu - mu_r|^2 + Tr(Sigma + Sigma_r - 2 (Sigma Sigma_r)^(1/2)), computed by
torch-fidelity's ``fid_statistics_to_metric`` from float64 statistics.

Error bar. Feature row i goes to group i mod K (K = ``groups``). At a rung of n images, FID is computed
from all rows (``fid``, EDM's plug-in number) and with each group left out (theta_k). The jackknife gives
  standard error  fid_err = sqrt((K-1)/K * sum_k (theta_k - mean theta)^2),
  bias-corrected  fid_debiased = K * fid - (K-1) * mean theta   (removes FID's O(1/n) bias),
and ``interval`` = fid_debiased +- t_{K-1} quantile * fid_err, which aims to cover the FID of the
generator's feature distribution against the reference statistics *as given* (n -> infinity) with
probability ``level``. It treats the reference as exact and assumes FID is well above its standard error
(near FID = 0 the estimator is not normal). Cost: K extra FIDs per rung and K [D, D] matrices of memory.
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
from edmbench.metrics.stats import ReferenceStats, StreamingStats

UNCERTAINTY_METHODS = ("jackknife", None)
FLUSH_ROWS = 1024  # feature rows buffered before they are folded into the group statistics


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """FID between two Gaussians' statistics, float64, by torch-fidelity's ``fid_statistics_to_metric``."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    a = {"mu": np.asarray(mu1, np.float64), "sigma": np.asarray(sigma1, np.float64)}
    b = {"mu": np.asarray(mu2, np.float64), "sigma": np.asarray(sigma2, np.float64)}
    if a["mu"].shape != b["mu"].shape:
        raise ValueError(f"feature dimensions differ: {a['mu'].shape[0]} vs {b['mu'].shape[0]} "
                         "(were both statistics made with the same extractor?)")
    return float(fid_statistics_to_metric(a, b, verbose=False)[KEY_METRIC_FID])


def fid_from_stats(stats: StreamingStats, reference: ReferenceStats) -> float:
    return frechet_distance(stats.mean, stats.cov, reference.mu, reference.sigma)


@dataclass
class RungResult:
    """FID (and optional KID / precision / recall) after the first ``n`` images of a stream."""

    n: int
    fid: float
    fid_err: float = math.nan
    fid_debiased: float = math.nan
    interval: tuple[float, float] = (math.nan, math.nan)
    level: float = math.nan
    nfe: float | None = None
    wall_time: float = math.nan
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(out.pop("extra"))
        return out


def jackknife(full: float, leave_one_out: Sequence[float], level: float) -> dict:
    """Grouped-jackknife standard error, bias correction and t-interval (see the module docstring)."""
    from scipy.special import stdtrit  # Student t quantile; lighter to import than scipy.stats

    theta = np.asarray(leave_one_out, dtype=np.float64)
    k = len(theta)
    err = float(math.sqrt((k - 1) / k * float(((theta - theta.mean()) ** 2).sum())))
    debiased = float(k * full - (k - 1) * theta.mean())
    half = float(stdtrit(k - 1, 0.5 + level / 2)) * err
    return {"fid_err": err, "fid_debiased": debiased, "interval": (debiased - half, debiased + half),
            "level": level}


class FIDStream:
    """Features in, FID estimates out: K group statistics (row i -> group i mod K) plus optional rows."""

    def __init__(self, reference: ReferenceStats, *, groups: int = 10, level: float = 0.95,
                 kid_pr: KIDPROptions | None = None) -> None:
        if groups < 1:
            raise ValueError(f"groups must be >= 1 (1 = no error bar), got {groups}")
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        self.reference, self.level = reference, level
        self.groups = [StreamingStats() for _ in range(groups)]
        self.kid_pr = kid_pr or KIDPROptions()
        self.reservoir = FeatureReservoir(self.kid_pr.max_rows) if self.kid_pr.any else None
        self.n = 0  # rows seen
        self._flushed = 0  # rows already folded into the group statistics
        self._buffer: list[np.ndarray] = []

    def update(self, features: torch.Tensor | np.ndarray) -> None:
        """Add feature rows ``[B, D]``. Rows are buffered (at most ``FLUSH_ROWS``) and folded into the
        group statistics in blocks, so per-batch cost does not grow with the number of groups."""
        rows = np.asarray(features.cpu() if hasattr(features, "cpu") else features, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.reference.dim:
            raise ValueError(f"features have shape {rows.shape}, but the reference statistics have "
                             f"dimension {self.reference.dim} (different extractor?)")
        self._buffer.append(rows)
        if self.reservoir is not None:
            self.reservoir.update(features)
        self.n += rows.shape[0]
        if self.n - self._flushed >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        rows = np.concatenate(self._buffer)
        k = len(self.groups)
        for g, stats in enumerate(self.groups):
            stats.update(rows[(g - self._flushed) % k :: k])  # global row i goes to group i mod k
        self._flushed += rows.shape[0]
        self._buffer = []

    def _merged(self, skip: int | None = None) -> StreamingStats:
        total = StreamingStats()
        for g, stats in enumerate(self.groups):
            if g != skip:
                total.merge(stats)
        return total

    def result(self) -> RungResult:
        """FID of everything seen so far, with the jackknife error bar when ``groups`` > 1."""
        self._flush()
        fid = fid_from_stats(self._merged(), self.reference)
        out = RungResult(n=self.n, fid=fid)
        if len(self.groups) > 1 and min(s.n for s in self.groups) > 0:
            loo = [fid_from_stats(self._merged(skip=g), self.reference) for g in range(len(self.groups))]
            for key, value in jackknife(fid, loo, self.level).items():
                setattr(out, key, value)
        if self.reservoir is not None:
            out.extra = kid_pr_metrics(self.reservoir.rows, self.reference.features, self.kid_pr)
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
                 groups: int = 10, level: float = 0.95,
                 kid_pr: KIDPROptions | None = None) -> Iterator[RungResult]:
    """Yield a ``RungResult`` when the stream reaches each rung (image count) in ``rungs``.

    ``batches`` yields ``ImageBatch``es or uint8 ``[B, C, H, W]`` tensors. It is consumed lazily and no
    further than the last rung, so scoring 10k images after 2k costs only the 8k new ones. With
    ``rungs=None`` there is one result at the end of the stream. ``uncertainty=None`` skips the error bar.
    """
    if uncertainty not in UNCERTAINTY_METHODS:
        raise ValueError(f"unknown uncertainty {uncertainty!r}; valid: {UNCERTAINTY_METHODS}")
    rungs = _check_rungs(rungs)
    stream = FIDStream(reference, groups=groups if uncertainty else 1, level=level, kid_pr=kid_pr)
    pending = list(rungs) if rungs is not None else []
    start, nfe_total = time.perf_counter(), 0.0
    for batch in batches:
        images = getattr(batch, "images", batch)
        nfe = float(getattr(batch, "nfe", 0) or 0)
        features = extract_features(extractor, images)
        while features.shape[0]:
            take = features.shape[0] if not pending else min(features.shape[0], pending[0] - stream.n)
            stream.update(features[:take])
            nfe_total += nfe * take
            features = features[take:]
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
