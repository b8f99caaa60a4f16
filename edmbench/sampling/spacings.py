"""The low-NFE literature's step spacings, besides EDM's four (``edm``, ``vp``, ``ve``, ``iddpm``).

Each function returns ``num_levels`` unrounded noise levels from ``sigma_max`` down to ``sigma_min``
(float64, strictly decreasing, both ends included, no final 0), with the signature of the discretization
registry's ``levels`` (``edmbench.sampling.discretizations``). How many levels a run needs, and whether a 0
follows them, is the end-point convention's business (:mod:`edmbench.sampling.conventions`).

- ``logsnr``: uniform in log sigma, sigma_i = sigma_max (sigma_min / sigma_max)^(i/(L-1)). In EDM's
  sigma(t) = t form logSNR = -2 log sigma, so this is DPM-Solver's / UniPC's "logSNR" spacing (Lu et al.
  2022, Sec. 3.4; diff-sampler's ``logsnr``). The levels equal ``ve``'s geometric ones on the same range.
- ``time_uniform``: uniform in VP time t on EDM's VP curve (Table 1: beta_d = 19.9, beta_min = 0.1),
  t_i = t(sigma_max) + i/(L-1) (t(sigma_min) - t(sigma_max)), sigma_i = sigma_VP(t_i), with
  t(sigma) = (sqrt(beta_min^2 + 2 beta_d log(1 + sigma^2)) - beta_min) / beta_d (DEIS' "time uniform").
  Unlike ``vp`` the curve is fixed (not refitted to the range), so any range is valid.
- ``polynomial``: EDM Eq. 5 with any real exponent rho != 0,
  sigma_i = (sigma_max^(1/rho) + i/(L-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho. rho = 7 is EDM's,
  rho = 1 is uniform in sigma, rho -> +-inf tends to ``logsnr``; negative rho crowds the steps at high
  noise instead of low noise.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from edmbench._lazy import lazy_module

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy_module("torch")  # imported on first use: this module's metadata is read without torch

VP_BETA_D, VP_BETA_MIN = 19.9, 0.1  # EDM Table 1 VP (fact sheet Sec. 2)
SPACINGS = ("logsnr", "time_uniform", "polynomial")


def _fractions(num_levels: int) -> Tensor:
    """i/(L-1) for i = 0..L-1 (float64); L = 1 gives [0] (sigma_max alone)."""
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 1:
        raise ValueError(f"num_levels must be an integer >= 1, got {num_levels!r}")
    steps = torch.arange(num_levels, dtype=torch.float64)
    return steps / (num_levels - 1) if num_levels > 1 else steps


def _check_range(sigma_min: float, sigma_max: float) -> None:
    if not (0 < sigma_min < sigma_max < math.inf):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, "
                         f"sigma_max={sigma_max}")


def logsnr_levels(num_levels: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Uniform in log sigma (= uniform in logSNR = -2 log sigma)."""
    _check_range(sigma_min, sigma_max)
    log_hi, log_lo = math.log(sigma_max), math.log(sigma_min)
    return torch.exp(log_hi + _fractions(num_levels) * (log_lo - log_hi))


def vp_time(sigma: Tensor | float, beta_d: float = VP_BETA_D, beta_min: float = VP_BETA_MIN) -> Tensor:
    """t(sigma), the inverse of sigma_VP(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) (EDM Table 1)."""
    s = torch.as_tensor(sigma, dtype=torch.float64)
    return (torch.sqrt(beta_min**2 + 2 * beta_d * torch.log1p(s * s)) - beta_min) / beta_d


def time_uniform_levels(num_levels: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Uniform in VP time on EDM's VP curve (beta_d = 19.9, beta_min = 0.1)."""
    _check_range(sigma_min, sigma_max)
    t_hi, t_lo = vp_time(sigma_max), vp_time(sigma_min)
    t = t_hi + _fractions(num_levels) * (t_lo - t_hi)
    return torch.sqrt(torch.expm1(0.5 * VP_BETA_D * t * t + VP_BETA_MIN * t))


def polynomial_levels(num_levels: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """EDM Eq. 5 for any real rho != 0 (rho > 0 is the ``edm`` discretisation)."""
    _check_range(sigma_min, sigma_max)
    if isinstance(rho, bool) or not isinstance(rho, int | float) or not math.isfinite(rho) or rho == 0:
        raise ValueError(f"rho must be a finite non-zero number for the polynomial spacing, got {rho!r}")
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (a + _fractions(num_levels) * (b - a)) ** rho
