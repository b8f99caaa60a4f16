"""Noise schedules sigma(t), scalings s(t) and time discretisations (EDM Table 1, Sec. 3).

The *discretisation* (``edm``, ``vp``, ``ve``, ``iddpm``) picks the N noise levels; ``make_sigmas`` is
the one place where the range is defaulted and clamped to the denoiser, levels are rounded with
``round_sigma`` and the final 0 is appended. The *schedule* sigma(t) and *scaling* s(t) define the ODE the
solver integrates (``linear`` / ``none`` is EDM's choice). All values are float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from edmbench.sampling._names import check_name

# Fact sheet Sec. 2: default (sigma_min, sigma_max) per discretisation; VP uses beta_d=19.9, beta_min=0.1.
VP_BETA_D, VP_BETA_MIN, EPSILON_S = 19.9, 0.1, 1e-3
IDDPM_C1, IDDPM_C2, IDDPM_M = 0.001, 0.008, 1000


def vp_sigma(t: float, beta_d: float = VP_BETA_D, beta_min: float = VP_BETA_MIN) -> float:
    """sigma_VP(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)."""
    return math.sqrt(math.expm1(0.5 * beta_d * t * t + beta_min * t))


DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "vp": (vp_sigma(EPSILON_S), vp_sigma(1.0)),
    "ve": (0.02, 100.0),
    "iddpm": (0.002, 81.0),
    "edm": (0.002, 80.0),
}
DISCRETIZATIONS = tuple(DEFAULT_RANGES)


@dataclass(frozen=True)
class Schedule:
    """sigma(t) with its derivative and inverse; ``name`` in {linear, ve, vp} (EDM Table 1)."""

    name: str = "linear"
    beta_d: float = VP_BETA_D
    beta_min: float = VP_BETA_MIN

    def __post_init__(self) -> None:
        check_name("schedule", self.name, SCHEDULES)

    def sigma(self, t: float) -> float:
        if self.name == "linear":
            return t
        if self.name == "ve":
            return math.sqrt(t)
        return vp_sigma(t, self.beta_d, self.beta_min)

    def sigma_deriv(self, t: float) -> float:
        if self.name == "linear":
            return 1.0
        if self.name == "ve":
            return 0.5 / math.sqrt(t)
        s = self.sigma(t)
        return 0.5 * (self.beta_min + self.beta_d * t) * (s + 1 / s)

    def sigma_inv(self, sigma: float) -> float:
        if self.name == "linear":
            return sigma
        if self.name == "ve":
            return sigma * sigma
        b, bd = self.beta_min, self.beta_d
        return (math.sqrt(b * b + 2 * bd * math.log1p(sigma * sigma)) - b) / bd


SCHEDULES = ("linear", "ve", "vp")
SCALINGS = ("none", "vp")


@dataclass(frozen=True)
class Scaling:
    """s(t) and s'(t) for a schedule: ``none`` (s = 1) or ``vp`` (s = 1/sqrt(1 + sigma^2))."""

    name: str = "none"

    def __post_init__(self) -> None:
        check_name("scaling", self.name, SCALINGS)

    def __call__(self, schedule: Schedule, t: float) -> tuple[float, float]:
        if self.name == "none":
            return 1.0, 0.0
        sigma = schedule.sigma(t)
        s = 1 / math.sqrt(1 + sigma * sigma)
        return s, -sigma * schedule.sigma_deriv(t) * s**3


LINEAR, NONE = Schedule("linear"), Scaling("none")


def vp_betas(sigma_min: float, sigma_max: float, epsilon_s: float = EPSILON_S) -> tuple[float, float]:
    """(beta_d, beta_min) of the VP curve through (epsilon_s, sigma_min) and (1, sigma_max), fact sheet §2."""
    beta_d = 2 * (math.log1p(sigma_min**2) / epsilon_s - math.log1p(sigma_max**2)) / (epsilon_s - 1)
    beta_min = math.log1p(sigma_max**2) - 0.5 * beta_d
    if not (beta_min + beta_d * epsilon_s > 0 and beta_min + beta_d > 0):  # increasing on [epsilon_s, 1]
        raise ValueError(f"no increasing VP curve passes through (epsilon_s={epsilon_s}, "
                         f"sigma_min={sigma_min}) and (1, sigma_max={sigma_max}) "
                         f"(beta_d={beta_d:.4g}, beta_min={beta_min:.4g}); "
                         "use a smaller sigma_min, a larger sigma_max or a larger epsilon_s")
    return beta_d, beta_min


def _fractions(num_steps: int) -> Tensor:
    """i/(N-1) for i = 0..N-1 as float64; N = 1 gives [0] (a single level, sigma_max), not 0/0."""
    steps = torch.arange(num_steps, dtype=torch.float64)
    return steps / (num_steps - 1) if num_steps > 1 else steps


def edm_levels(num_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """EDM Eq. 5: (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho."""
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (a + _fractions(num_steps) * (b - a)) ** rho


def vp_levels(num_steps: int, sigma_min: float, sigma_max: float, epsilon_s: float = EPSILON_S) -> Tensor:
    """VP: uniform t from 1 to epsilon_s, mapped through the VP curve fitted to the range."""
    beta_d, beta_min = vp_betas(sigma_min, sigma_max, epsilon_s)
    t = 1 + _fractions(num_steps) * (epsilon_s - 1)
    return torch.sqrt(torch.expm1(0.5 * beta_d * t**2 + beta_min * t))


def ve_levels(num_steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """VE: geometric from sigma_max to sigma_min (sigma_i^2 = sigma_max^2 (sigma_min/sigma_max)^(2i/(N-1)))"""
    return torch.sqrt(sigma_max**2 * (sigma_min**2 / sigma_max**2) ** _fractions(num_steps))


def iddpm_table(c1: float = IDDPM_C1, c2: float = IDDPM_C2, m: int = IDDPM_M) -> Tensor:
    """iDDPM noise levels u_0 > ... > u_M = 0 (float64; EDM Table 1, cosine alpha-bar)."""
    def alpha_bar(j: int) -> float:
        return math.sin(0.5 * math.pi * j / m / (c2 + 1)) ** 2

    u = [0.0] * (m + 1)
    for j in range(m, 0, -1):
        u[j - 1] = math.sqrt((u[j] ** 2 + 1) / max(alpha_bar(j - 1) / alpha_bar(j), c1) - 1)
    return torch.tensor(u, dtype=torch.float64)


def iddpm_levels(num_steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """iDDPM: the table entries inside [sigma_min, sigma_max], N of them picked at rounded even spacing."""
    u = iddpm_table()
    u = u[(u >= sigma_min) & (u <= sigma_max)]
    if len(u) == 0:
        raise ValueError(f"no iDDPM noise level lies in [{sigma_min}, {sigma_max}]")
    return u[((len(u) - 1) * _fractions(num_steps)).round().long()]


def default_range(discretization: str) -> tuple[float, float]:
    check_name("discretization", discretization, DISCRETIZATIONS)
    return DEFAULT_RANGES[discretization]


def resolve_range(discretization: str, sigma_min: float | None, sigma_max: float | None,
                  denoiser_min: float = 0.0, denoiser_max: float = math.inf) -> tuple[float, float]:
    """Per-discretisation defaults for unset ends, then clamped to the denoiser's range (EDM Alg. step 1)."""
    lo, hi = default_range(discretization)
    lo = max(lo if sigma_min is None else sigma_min, float(denoiser_min))
    hi = min(hi if sigma_max is None else sigma_max, float(denoiser_max))
    if not 0 < lo <= hi < math.inf:
        raise ValueError(f"noise range [{lo}, {hi}] (after clamping to the denoiser's "
                         f"[{denoiser_min}, {denoiser_max}]) must satisfy 0 < sigma_min <= sigma_max < inf")
    return lo, hi


def noise_levels(discretization: str, num_steps: int, sigma_min: float, sigma_max: float, *,
                 rho: float = 7.0, epsilon_s: float = EPSILON_S) -> Tensor:
    """The N unrounded noise levels of a discretisation (float64, descending, no final 0)."""
    check_name("discretization", discretization, DISCRETIZATIONS)
    if discretization == "edm":
        return edm_levels(num_steps, sigma_min, sigma_max, rho)
    if discretization == "vp":
        return vp_levels(num_steps, sigma_min, sigma_max, epsilon_s)
    if discretization == "ve":
        return ve_levels(num_steps, sigma_min, sigma_max)
    return iddpm_levels(num_steps, sigma_min, sigma_max)


def make_sigmas(discretization: str, num_steps: int, sigma_min: float, sigma_max: float, *,
                rho: float = 7.0, epsilon_s: float = EPSILON_S, round_sigma=None) -> Tensor:
    """``[num_steps + 1]`` float64: the rounded noise levels then 0; the range must already be resolved.

    ``round_sigma`` is the denoiser's (identity if None). Raises if rounding merges levels.
    """
    levels = noise_levels(discretization, num_steps, sigma_min, sigma_max, rho=rho, epsilon_s=epsilon_s)
    if round_sigma is not None:
        levels = torch.as_tensor(round_sigma(levels), dtype=torch.float64).reshape(num_steps).cpu()
    sigmas = torch.cat([levels, torch.zeros(1, dtype=torch.float64)])
    if not (sigmas[:-1] > sigmas[1:]).all():
        raise ValueError(f"the {discretization} discretisation with num_steps={num_steps} on "
                         f"[{sigma_min}, {sigma_max}] gives repeated noise levels (after the denoiser's "
                         "round_sigma); use fewer steps or a wider range")
    return sigmas
