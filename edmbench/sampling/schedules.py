"""Noise schedules sigma(t) and signal scalings s(t) of the ODE a solver integrates (EDM Table 1, Sec. 3).

Each is an object with ``sigma``/``sigma_deriv``/``sigma_inv`` (schedules) or ``__call__(schedule, t) ->
(s, s')`` (scalings). The registries ``SCHEDULES`` and ``SCALINGS`` map a SamplerConfig name to an entry that
declares the SamplerConfig knobs it reads and builds the object for a resolved noise range. ``linear`` /
``none`` is EDM's choice. All values are float64 Python floats. Which noise *levels* are used is the
discretisation's business (``edmbench.sampling.discretizations``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from edmbench.registry import Registry

# Fact sheet Sec. 2: the VP curve of the default ranges (beta_d = 19.9, beta_min = 0.1) and its end time.
VP_BETA_D, VP_BETA_MIN, EPSILON_S = 19.9, 0.1, 1e-3


def vp_sigma(t: float, beta_d: float = VP_BETA_D, beta_min: float = VP_BETA_MIN) -> float:
    """sigma_VP(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) (EDM Table 1; expm1 for accuracy)."""
    return math.sqrt(math.expm1(0.5 * beta_d * t * t + beta_min * t))


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


class Schedule(Protocol):
    """sigma(t) with its derivative and inverse (EDM Table 1)."""

    name: str

    def sigma(self, t: float) -> float: ...

    def sigma_deriv(self, t: float) -> float: ...

    def sigma_inv(self, sigma: float) -> float: ...


class Scaling(Protocol):
    """s(t) and s'(t) for a schedule."""

    name: str

    def __call__(self, schedule: Schedule, t: float) -> tuple[float, float]: ...


@dataclass(frozen=True)
class LinearSchedule:
    """sigma(t) = t (EDM's choice)."""

    name: ClassVar[str] = "linear"

    def sigma(self, t: float) -> float:
        return t

    def sigma_deriv(self, t: float) -> float:
        return 1.0

    def sigma_inv(self, sigma: float) -> float:
        return sigma


@dataclass(frozen=True)
class VESchedule:
    """sigma(t) = sqrt(t) (Song et al.'s VE)."""

    name: ClassVar[str] = "ve"

    def sigma(self, t: float) -> float:
        return math.sqrt(t)

    def sigma_deriv(self, t: float) -> float:
        return 0.5 / math.sqrt(t)

    def sigma_inv(self, sigma: float) -> float:
        return sigma * sigma


@dataclass(frozen=True)
class VPSchedule:
    """VP (EDM Table 1): sigma(t) = sqrt(exp(beta_d t^2/2 + beta_min t) - 1),
    sigma'(t) = (beta_min + beta_d t)(sigma + 1/sigma)/2."""

    beta_d: float = VP_BETA_D
    beta_min: float = VP_BETA_MIN
    name: ClassVar[str] = "vp"

    def sigma(self, t: float) -> float:
        return vp_sigma(t, self.beta_d, self.beta_min)

    def sigma_deriv(self, t: float) -> float:
        s = self.sigma(t)
        return 0.5 * (self.beta_min + self.beta_d * t) * (s + 1 / s)

    def sigma_inv(self, sigma: float) -> float:
        b, bd = self.beta_min, self.beta_d
        return (math.sqrt(b * b + 2 * bd * math.log1p(sigma * sigma)) - b) / bd


@dataclass(frozen=True)
class NoScaling:
    """s(t) = 1."""

    name: ClassVar[str] = "none"

    def __call__(self, schedule: Schedule, t: float) -> tuple[float, float]:
        return 1.0, 0.0


@dataclass(frozen=True)
class VPScaling:
    """s(t) = 1/sqrt(1 + sigma(t)^2), s'(t) = -sigma sigma' s^3."""

    name: ClassVar[str] = "vp"

    def __call__(self, schedule: Schedule, t: float) -> tuple[float, float]:
        sigma = schedule.sigma(t)
        s = 1 / math.sqrt(1 + sigma * sigma)
        return s, -sigma * schedule.sigma_deriv(t) * s**3


LINEAR, NONE = LinearSchedule(), NoScaling()


@dataclass(frozen=True)
class ScheduleInfo:
    """A registered sigma(t) (or s(t)): ``build(sigma_min, sigma_max, **knobs)`` makes the object for a
    resolved noise range; ``knobs`` are the SamplerConfig fields it reads (passed to ``build`` by name)."""

    name: str
    build: Callable[..., Any]
    knobs: tuple[str, ...]
    description: str


def _constant(obj: Any) -> Callable[..., Any]:
    def build(sigma_min: float, sigma_max: float) -> Any:
        return obj
    return build


def _vp_schedule(sigma_min: float, sigma_max: float, epsilon_s: float) -> VPSchedule:
    """EDM's ablation sampler: the VP curve refitted through (epsilon_s, sigma_min) and (1, sigma_max)."""
    return VPSchedule(*vp_betas(sigma_min, sigma_max, epsilon_s))


SCHEDULES: Registry[ScheduleInfo] = Registry("schedule")
for _info in (
    ScheduleInfo("linear", _constant(LINEAR), (), "sigma(t) = t (EDM)"),
    ScheduleInfo("ve", _constant(VESchedule()), (), "sigma(t) = sqrt(t) (VE)"),
    ScheduleInfo("vp", _vp_schedule, ("epsilon_s",),
                 "VP sigma(t) through (epsilon_s, sigma_min) and (1, sigma_max)"),
):
    SCHEDULES.register(_info.name, _info)

SCALINGS: Registry[ScheduleInfo] = Registry("scaling")
for _info in (
    ScheduleInfo("none", _constant(NONE), (), "s(t) = 1 (EDM)"),
    ScheduleInfo("vp", _constant(VPScaling()), (), "s(t) = 1/sqrt(1 + sigma(t)^2) (VP)"),
):
    SCALINGS.register(_info.name, _info)
