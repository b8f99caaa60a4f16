"""Time discretisations: which N noise levels a run visits (EDM Table 1 "t_i", Sec. 3; fact sheet §2).

A registered discretisation (``DISCRETIZATIONS``) has ``levels(num_steps, sigma_min, sigma_max, **knobs)``
(float64, descending, no final 0), ``default_range(**knobs)`` for unset ends, and ``knobs``: the
SamplerConfig fields both read (passed by name). ``make_sigmas`` is the one place where levels are rounded
with the denoiser's ``round_sigma`` and the final 0 is appended; ``resolve_range`` the one place where the
range is defaulted and clamped to the denoiser's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edmbench._lazy import lazy_module
from edmbench.registry import Registry
from edmbench.sampling.schedules import EPSILON_S, vp_betas, vp_sigma

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy_module("torch")  # imported on first use: this module's metadata is read without torch


class MissingKnobsError(ValueError):
    """Raised by a discretisation's ``check`` when knobs it needs are absent (and nothing else is wrong):
    ``missing`` names them. Spec validation tolerates it on partial configurations (searched knobs not yet
    suggested) and reports it on complete ones."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = list(missing)


@dataclass(frozen=True)
class DiscretizationInfo:
    """A registered discretisation; ``levels`` and ``default_range`` receive the ``knobs`` by name."""

    name: str
    levels: Callable[..., Tensor]
    default_range: Callable[..., tuple[float, float]]
    knobs: tuple[str, ...]
    description: str
    # check(num_levels, **knobs): what can be refused before a denoiser is known (SamplerConfig calls it)
    check: Callable[..., None] | None = None


def _fractions(num_steps: int) -> Tensor:
    """i/(N-1) for i = 0..N-1 as float64; N = 1 gives [0] (a single level, sigma_max), not 0/0."""
    steps = torch.arange(num_steps, dtype=torch.float64)
    return steps / (num_steps - 1) if num_steps > 1 else steps


def edm_levels(num_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """EDM Eq. 5: (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho."""
    try:
        a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    except OverflowError:
        raise ValueError(f"rho={rho} is too small for sigma_max={sigma_max}: sigma_max^(1/rho) overflows "
                         "float64 (rho must exceed ln(sigma_max)/709)") from None
    return (a + _fractions(num_steps) * (b - a)) ** rho


def vp_levels(num_steps: int, sigma_min: float, sigma_max: float, epsilon_s: float = EPSILON_S) -> Tensor:
    """VP: uniform t from 1 to epsilon_s, mapped through the VP curve fitted to the range (fact sheet §2).

    EDM writes sigma as (e^x - 1)^(1/2); we use expm1 (same value to ~1e-12 relative, more accurate).
    """
    beta_d, beta_min = vp_betas(sigma_min, sigma_max, epsilon_s)
    t = 1 + _fractions(num_steps) * (epsilon_s - 1)
    return torch.sqrt(torch.expm1(0.5 * beta_d * t**2 + beta_min * t))


def ve_levels(num_steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """VE: geometric from sigma_max to sigma_min (sigma_i^2 = sigma_max^2 (sigma_min/sigma_max)^(2i/(N-1)))"""
    return torch.sqrt(sigma_max**2 * (sigma_min**2 / sigma_max**2) ** _fractions(num_steps))


def iddpm_levels(num_steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """iDDPM: the entries of EDM generate.py's u-table (``edmbench.denoisers.iddpm.iddpm_u``, float64)
    inside [sigma_min, sigma_max], N of them at indices round(((len - 1) / (N - 1)) i) (float64, in EDM's
    order of operations, half to even); N = 1 gives the largest."""
    from edmbench.denoisers.iddpm import iddpm_u

    u = iddpm_u()
    u = u[(u >= sigma_min) & (u <= sigma_max)]
    if len(u) == 0:
        raise ValueError(f"no iDDPM noise level lies in [{sigma_min}, {sigma_max}]")
    steps = torch.arange(num_steps, dtype=torch.float64)
    spacing = (len(u) - 1) / (num_steps - 1) if num_steps > 1 else 0.0
    return u[(spacing * steps).round().long()]


def _fixed_range(sigma_min: float, sigma_max: float) -> Callable[..., tuple[float, float]]:
    def default_range(**_: Any) -> tuple[float, float]:
        return sigma_min, sigma_max
    return default_range


def _vp_range(epsilon_s: float = EPSILON_S) -> tuple[float, float]:
    """EDM generate.py: [sigma_VP(epsilon_s), sigma_VP(1)] with beta_d = 19.9, beta_min = 0.1."""
    return vp_sigma(epsilon_s), vp_sigma(1.0)


DISCRETIZATIONS: Registry[DiscretizationInfo] = Registry("discretization")
for _info in (
    DiscretizationInfo("edm", edm_levels, _fixed_range(0.002, 80.0), ("rho",),
                       "EDM Eq. 5: rho-warped uniform steps in sigma^(1/rho)"),
    DiscretizationInfo("vp", vp_levels, _vp_range, ("epsilon_s",),
                       "VP: uniform t in [epsilon_s, 1] on the fitted VP curve"),
    DiscretizationInfo("ve", ve_levels, _fixed_range(0.02, 100.0), (),
                       "VE: geometric in sigma"),
    DiscretizationInfo("iddpm", iddpm_levels, _fixed_range(0.002, 81.0), (),
                       "iDDPM: evenly spaced entries of the u-table"),
):
    DISCRETIZATIONS.register(_info.name, _info)


def _read(info: DiscretizationInfo, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """The knobs ``info`` declares, taken from ``knobs`` (absent ones: the function's own default)."""
    return {name: knobs[name] for name in info.knobs if name in knobs}


def default_range(discretization: str, **knobs: Any) -> tuple[float, float]:
    """(sigma_min, sigma_max) a discretisation uses for unset ends (fact sheet §2 "Default ranges")."""
    info = DISCRETIZATIONS.get(discretization)
    return info.default_range(**_read(info, knobs))


def resolve_range(discretization: str, sigma_min: float | None, sigma_max: float | None,
                  denoiser_min: float = 0.0, denoiser_max: float = math.inf,
                  **knobs: Any) -> tuple[float, float]:
    """Per-discretisation defaults for unset ends, then clamped to the denoiser's range (EDM Alg. step 1)."""
    lo, hi = default_range(discretization, **knobs)
    lo = max(lo if sigma_min is None else sigma_min, float(denoiser_min))
    hi = min(hi if sigma_max is None else sigma_max, float(denoiser_max))
    if not 0 < lo <= hi < math.inf:
        raise ValueError(f"noise range [{lo}, {hi}] (after clamping to the denoiser's "
                         f"[{denoiser_min}, {denoiser_max}]) must satisfy 0 < sigma_min <= sigma_max < inf")
    return lo, hi


def check_knobs(discretization: str, num_levels: int, knobs: Mapping[str, Any]) -> None:
    """Raise if the knobs cannot make ``num_levels`` levels (the discretisation's ``check``, if any): called
    when a SamplerConfig is built, so a bad combination fails there, not when the levels are made."""
    info = DISCRETIZATIONS.get(discretization)
    if info.check is not None:
        info.check(num_levels, **_read(info, knobs))


def noise_levels(discretization: str, num_steps: int, sigma_min: float, sigma_max: float,
                 **knobs: Any) -> Tensor:
    """The N unrounded noise levels of a discretisation (float64, descending, no final 0)."""
    info = DISCRETIZATIONS.get(discretization)
    return info.levels(num_steps, sigma_min, sigma_max, **_read(info, knobs))


def make_sigmas(discretization: str, num_steps: int, sigma_min: float, sigma_max: float, *,
                round_sigma: Callable[[Tensor], Tensor] | None = None, **knobs: Any) -> Tensor:
    """``[num_steps + 1]`` float64: the rounded noise levels then 0; the range must already be resolved.

    ``knobs``: SamplerConfig values (e.g. ``rho``); the discretisation reads those it declares.
    ``round_sigma`` is the denoiser's (identity if None). Raises if rounding merges levels.
    """
    levels = noise_levels(discretization, num_steps, sigma_min, sigma_max, **knobs)
    if round_sigma is not None:
        levels = torch.as_tensor(round_sigma(levels), dtype=torch.float64).reshape(num_steps).cpu()
    sigmas = torch.cat([levels, torch.zeros(1, dtype=torch.float64)])
    if not (sigmas[:-1] > sigmas[1:]).all():
        raise ValueError(f"the {discretization} discretisation with num_steps={num_steps} on "
                         f"[{sigma_min}, {sigma_max}] gives repeated noise levels (after the denoiser's "
                         "round_sigma); use fewer steps or a wider range")
    return sigmas
