"""Paired comparisons on shared seeds: the interval of a difference of two settings' scores.

Two settings scored on the same seeds share their seed groups (group k = the seeds s with s mod K = k), so
their leave-one-group-out estimates are paired element-wise. The grouped jackknife (Quenouille-Tukey, with
groups as the deleted units) applied to the *difference* theta = score_a - score_b gives

    full       d   = a - b                                (both on all n images)
    loo        d_k = a_k - b_k                             (group k left out of both)
    SE         se  = sqrt((K-1)/K * sum_k (d_k - mean d)^2)
    debiased   d*  = K d - (K-1) mean d                    (removes the O(1/n) bias of each FID)
    interval   d* +- t_{K-1, (1+level)/2} se              (claimed coverage: ``level``, two-sided)

Common noise (the same latents through two similar samplers) cancels in d_k, which is why the paired SE is
often tens of times smaller than the unpaired sqrt(se_a^2 + se_b^2). The interval aims to cover the
difference of the two settings' FIDs at n -> infinity against the same reference statistics (treated as
exact); its coverage is checked on a synthetic problem with known FIDs in ``tests/metrics/test_paired.py``.

The verdict words come from the interval only: "better" / "worse" when it excludes 0 (in the objective's
direction), otherwise "not distinguishable at n = ...". Nothing here is specific to FID: any score with K
leave-one-group-out values (``loo_from_per_seed`` makes them for per-seed means) works.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_LEVEL = 0.95
VERDICTS = ("better", "worse", "not distinguishable")


def _t_quantile(df: float, level: float) -> float:
    from scipy.special import stdtrit  # Student t quantile

    return float(stdtrit(df, 0.5 + level / 2))


@dataclass(frozen=True)
class Difference:
    """``a - b`` of one objective on shared seeds: plug-in ``estimate``, jackknife ``debiased`` centre,
    ``se``, the two-sided ``interval`` at ``level`` with ``df`` degrees of freedom, at ``num_images``
    images per setting."""

    estimate: float
    debiased: float
    se: float
    interval: tuple[float, float]
    level: float
    df: float
    num_images: int
    paired: bool = True

    def verdict(self, direction: str = "minimize") -> str:
        """"better" / "worse" (a relative to b) when the interval excludes 0, else "not
        distinguishable at n = ..."; ``direction`` is the objective's ("minimize": lower is better)."""
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
        lo, hi = self.interval
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return f"not distinguishable at n = {self.num_images:,} (no interval)"
        below, above = hi < 0, lo > 0
        if below or above:
            return "better" if below == (direction == "minimize") else "worse"
        return f"not distinguishable at n = {self.num_images:,}"

    def images_to_separate(self) -> int | None:
        """Images per setting at which the interval's half-width would equal |d*| (SE ~ 1/sqrt(n), from the
        measured paired variance): n * (t se / |d*|)^2. None when d* is 0 or the SE unknown."""
        if not (self.se > 0 and math.isfinite(self.se)) or self.debiased == 0:
            return None
        half = _t_quantile(self.df, self.level) * self.se
        return max(self.num_images, math.ceil(self.num_images * (half / abs(self.debiased)) ** 2))

    def describe(self, label: str = "", digits: int = 3) -> str:
        lo, hi = self.interval
        kind = "paired" if self.paired else "unpaired"
        return (f"{self.debiased:+.{digits}f} {label}".rstrip() + f" [{lo:+.{digits}f}, {hi:+.{digits}f}] "
                f"({self.level:.0%} {kind} interval, SE {self.se:.{digits}f}, n = {self.num_images:,})")


def jackknife_stats(full: float, loo: Sequence[float]) -> tuple[float, float]:
    """(debiased estimate, standard error) of the grouped jackknife of one statistic (module
    docstring), by :func:`edmbench.metrics.fid.jackknife_interval`."""
    from edmbench.metrics.fid import jackknife_interval  # the one implementation of the formula

    if len(loo) < 2:
        raise ValueError(f"a jackknife needs at least 2 leave-one-out values, got {len(loo)}")
    out = jackknife_interval(full, loo, DEFAULT_LEVEL)
    return out["fid_debiased"], out["fid_err"]


def paired_difference(full_a: float, loo_a: Sequence[float], full_b: float, loo_b: Sequence[float],
                      num_images: int, level: float = DEFAULT_LEVEL) -> Difference:
    """The jackknife-t interval of ``a - b`` from both settings' leave-one-group-out values (same seeds)."""
    loo_a, loo_b = np.asarray(loo_a, np.float64), np.asarray(loo_b, np.float64)
    if loo_a.shape != loo_b.shape or loo_a.ndim != 1:
        raise ValueError(f"paired leave-one-out values must have the same length (the same seed groups), "
                         f"got {loo_a.shape} and {loo_b.shape}")
    _check_level(level)
    debiased, se = jackknife_stats(full_a - full_b, loo_a - loo_b)
    df = len(loo_a) - 1
    half = _t_quantile(df, level) * se
    return Difference(full_a - full_b, debiased, se, (debiased - half, debiased + half), level, df,
                      int(num_images))


def single_estimate(full: float, loo: Sequence[float], num_images: int,
                    level: float = DEFAULT_LEVEL) -> Difference:
    """The jackknife-t interval of one score (a difference against 0), e.g. one held-out FID."""
    loo = np.asarray(loo, np.float64)
    return paired_difference(full, loo, 0.0, np.zeros_like(loo), num_images, level)


def unpaired_difference(full_a: float, loo_a: Sequence[float], full_b: float, loo_b: Sequence[float],
                        num_images: int, level: float = DEFAULT_LEVEL) -> Difference:
    """The naive interval that ignores the pairing: SE sqrt(se_a^2 + se_b^2), Welch-Satterthwaite df (for
    comparison only; on shared seeds it is too wide for deterministic samplers)."""
    _check_level(level)
    da, sa = jackknife_stats(full_a, loo_a)
    db, sb = jackknife_stats(full_b, loo_b)
    se = math.hypot(sa, sb)
    ka, kb = len(loo_a) - 1, len(loo_b) - 1
    df = se**4 / (sa**4 / ka + sb**4 / kb) if se > 0 else float(ka + kb)
    half = _t_quantile(df, level) * se
    d = da - db
    return Difference(full_a - full_b, d, se, (d - half, d + half), level, df, int(num_images), paired=False)


def combine(differences: Sequence[Difference]) -> Difference:
    """The mean of independent differences (disjoint seed ranges, same n): SE sqrt(sum se_r^2) / R and
    Welch-Satterthwaite degrees of freedom; the interval at their common level."""
    if not differences:
        raise ValueError("combine() needs at least one difference")
    if len(differences) == 1:
        return differences[0]
    levels = {d.level for d in differences}
    if len(levels) != 1:
        raise ValueError(f"differences have different levels {sorted(levels)}")
    r = len(differences)
    se = math.sqrt(sum(d.se**2 for d in differences)) / r
    terms = sum((d.se / r) ** 4 / d.df for d in differences if d.df > 0)
    df = se**4 / terms if terms > 0 else float(sum(d.df for d in differences))
    level = levels.pop()
    centre = float(np.mean([d.debiased for d in differences]))
    half = _t_quantile(df, level) * se
    return Difference(float(np.mean([d.estimate for d in differences])), centre, se,
                      (centre - half, centre + half), level, df,
                      sum(d.num_images for d in differences), differences[0].paired)


def loo_from_per_seed(values: Sequence[float], seeds: Sequence[int],
                      groups: int = 10) -> tuple[float, list[float]]:
    """(mean, leave-one-group-out means) of a per-seed score, group = seed mod ``groups``: the input of
    :func:`paired_difference` for any objective that is a mean over images."""
    v, s = np.asarray(values, np.float64), np.asarray(list(seeds), np.int64)
    if v.shape != s.shape:
        raise ValueError(f"{len(v)} per-seed values for {len(s)} seeds")
    group = s % groups
    loo = [float(v[group != k].mean()) for k in range(groups)]
    return float(v.mean()), loo


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
