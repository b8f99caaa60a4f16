"""SamplerConfig: every science knob of one sampling run, validated up front."""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any

from edmbench.sampling._names import check_name
from edmbench.sampling.churn import Churn
from edmbench.sampling.registry import SamplerInfo, get_sampler, sampler_names
from edmbench.sampling.schedules import DISCRETIZATIONS, EPSILON_S, SCALINGS, SCHEDULES

_CHURN_FIELDS = ("s_churn", "s_tmin", "s_tmax", "s_noise")
_SOLVER_FIELDS = ("schedule", "scaling", "alpha", "order", "eta")
_NON_SOLVER_USERS = {"rho": "discretization 'edm'", "epsilon_s": "discretization or schedule 'vp'"}
_FLOAT_FIELDS = ("rho", "s_churn", "s_tmin", "s_tmax", "s_noise", "alpha", "eta", "epsilon_s")


@dataclass(frozen=True)
class SamplerConfig:
    """One sampling run's knobs (EDM Alg. 1/2 and Table 1 names; churn knobs are the paper's S_*).

    A knob that the chosen sampler or discretisation would ignore must stay at its default; otherwise
    construction raises, so a study never records a setting that had no effect.
    """

    sampler: str = "heun"
    num_steps: int = 18
    sigma_min: float | None = None  # None: the discretisation's default (fact sheet Sec. 2)
    sigma_max: float | None = None
    rho: float = 7.0  # edm discretisation only
    discretization: str = "edm"  # edm | vp | ve | iddpm: which noise levels
    schedule: str = "linear"  # sigma(t): linear | vp | ve (euler/heun only)
    scaling: str = "none"  # s(t): none | vp (euler/heun only)
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    alpha: float = 1.0  # heun's generalised 2nd-order point, (0, 1]
    order: int | None = None  # ipndm/ipndm_v: 1..4 (None = 4); unipc: 1..3 (None = 2)
    eta: float = 1.0  # euler_ancestral noise fraction, [0, 1]
    epsilon_s: float = EPSILON_S  # VP end time, used when discretization or schedule is vp

    def __post_init__(self) -> None:
        for name in _FLOAT_FIELDS + ("sigma_min", "sigma_max"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{name} must be a number, got {value!r}")
                object.__setattr__(self, name, float(value))
        check_name("sampler", self.sampler, sampler_names())
        check_name("discretization", self.discretization, DISCRETIZATIONS)
        check_name("schedule", self.schedule, SCHEDULES)
        check_name("scaling", self.scaling, SCALINGS)
        self._check_ranges()
        self.churn  # noqa: B018 -- validates the churn knobs
        self._check_unused()

    def _check_ranges(self) -> None:
        if isinstance(self.num_steps, bool) or not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ValueError(f"num_steps must be an integer >= 1, got {self.num_steps!r}")
        for name in ("sigma_min", "sigma_max"):
            value = getattr(self, name)
            if value is not None and not (0 < value < math.inf):
                raise ValueError(f"{name} must be None or a finite number > 0, got {value}")
        if None not in (self.sigma_min, self.sigma_max) and self.sigma_min > self.sigma_max:
            raise ValueError(f"sigma_min ({self.sigma_min}) must be <= sigma_max ({self.sigma_max})")
        if not (0 < self.rho < math.inf):
            raise ValueError(f"rho must be a finite number > 0, got {self.rho}")
        if not (0 < self.alpha <= 1):
            raise ValueError(f"alpha must be in (0, 1] (1 = Heun, 0.5 = midpoint), got {self.alpha}")
        orders = self.info.orders
        bad_type = isinstance(self.order, bool) or not isinstance(self.order, int)
        if self.order is not None and orders and (bad_type or self.order not in orders):
            raise ValueError(f"order for sampler {self.sampler!r} must be None or one of {list(orders)}, "
                             f"got {self.order!r}")
        if not (0 <= self.eta <= 1):
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        if not (0 < self.epsilon_s < 1):
            raise ValueError(f"epsilon_s must be in (0, 1), got {self.epsilon_s}")

    def _check_unused(self) -> None:
        info, defaults = self.info, _defaults()
        unused = [f for f in _SOLVER_FIELDS if f not in info.params]
        unused += [] if info.churn else list(_CHURN_FIELDS)
        unused += [] if self.discretization == "edm" else ["rho"]
        unused += [] if "vp" in (self.discretization, self.schedule) else ["epsilon_s"]
        for name in unused:
            if getattr(self, name) != defaults[name]:
                users = [n for n in sampler_names() if name in get_sampler(n).params
                         or (name in _CHURN_FIELDS and get_sampler(n).churn)]
                where = _NON_SOLVER_USERS.get(name, f"samplers {users}")
                raise ValueError(f"{name}={getattr(self, name)!r} has no effect with sampler "
                                 f"{self.sampler!r} and discretization {self.discretization!r}; "
                                 f"it is used by {where}. Leave it at its default ({defaults[name]!r}).")

    @property
    def info(self) -> SamplerInfo:
        return get_sampler(self.sampler)

    @property
    def churn(self) -> Churn:
        return Churn(self.s_churn, self.s_tmin, self.s_tmax, self.s_noise)

    @property
    def nfe(self) -> int:
        """Denoiser evaluations per sample, from the registry formula (final step to sigma = 0)."""
        return self.info.nfe(self.num_steps)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SamplerConfig:
        """Build from a mapping; unknown keys raise, listing the valid ones (and a close match)."""
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in valid:
                close = difflib.get_close_matches(str(key), valid, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown SamplerConfig key {key!r}{hint} Valid keys: {', '.join(valid)}")
        return cls(**d)


def _defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(SamplerConfig)}
