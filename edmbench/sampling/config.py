"""SamplerConfig: every science knob of one sampling run, validated up front.

Which knobs a configuration reads comes from registry metadata (``edmbench.sampling.knobs``); this module
adds the defaults (they live only in ``SamplerConfig``) and offers the helpers the study layer uses:
``knobs_read(parents)``, ``ignored_knobs(params)`` and ``with_denoiser_defaults(params, denoiser)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edmbench.registry import close_match
from edmbench.sampling.churn import Churn
from edmbench.sampling.conventions import Convention
from edmbench.sampling.discretizations import check_knobs
from edmbench.sampling.knobs import KNOBS, PARENT_KNOBS, PARENTS, read_by, readers
from edmbench.sampling.registry import SamplerInfo, get_sampler
from edmbench.sampling.schedules import EPSILON_S

_FLOAT_FIELDS = ("rho", "s_churn", "s_tmin", "s_tmax", "s_noise", "alpha", "eta", "epsilon_s")


@dataclass(frozen=True)
class SamplerConfig:
    """One sampling run's knobs (EDM Alg. 1/2 and Table 1 names; churn knobs are the paper's S_*).

    A knob that the chosen sampler, discretisation, schedule or scaling would ignore must stay at its
    default; otherwise construction raises, so a study never records a setting that had no effect.
    ``extra`` holds registered knobs that are not fields (``edmbench.sampling.knobs.Knob``); read any
    knob with ``config.knob(name)`` (registered ones also as attributes).
    """

    sampler: str = "heun"
    num_steps: int = 18
    sigma_min: float | None = None  # None: the discretisation's default (fact sheet Sec. 2)
    sigma_max: float | None = None
    rho: float = 7.0  # edm discretisation only
    discretization: str = "edm"  # which noise levels (registry DISCRETIZATIONS)
    schedule: str = "linear"  # sigma(t) (registry SCHEDULES; euler/heun only)
    scaling: str = "none"  # s(t) (registry SCALINGS; euler/heun only)
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    churn_noise: str = "model"  # when churn draws noise: every_step (EDM1) | in_window (EDM2) | model (the
    # denoiser's release: EDM2 nets in_window, others every_step; resolved in sample())
    alpha: float = 1.0  # heun's generalised 2nd-order point, (0, 1]
    order: int | None = None  # ipndm/ipndm_v: 1..4 (None = 4); unipc: 1..3 (None = 2)
    eta: float = 1.0  # euler_ancestral noise fraction, [0, 1]
    epsilon_s: float = EPSILON_S  # VP end time, read by the vp discretisation and the vp schedule
    endpoint: str = "zero"  # zero (EDM) | sigma_min | sigma_min_denoise (edmbench.sampling.conventions)
    afs: bool = False  # analytic first step: replaces the first network call (conventions)
    extra: Any = ()  # registered non-field knobs: a mapping name -> value, stored as sorted pairs

    def __post_init__(self) -> None:
        for name in _FLOAT_FIELDS + ("sigma_min", "sigma_max"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{name} must be a number, got {value!r}")
                object.__setattr__(self, name, float(value))
        object.__setattr__(self, "extra", _checked_extra(self.extra))
        for parent in PARENT_KNOBS:
            PARENTS[parent].get(getattr(self, parent))  # unknown names: valid ones and a close match
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
        self.convention  # noqa: B018 -- validates endpoint and afs
        check_knobs(self.discretization, self.convention.num_levels(self.num_steps), self.to_dict())

    def _check_unused(self) -> None:
        defaults = self.defaults()
        changed = {name: value for name, value in self.to_dict().items() if value != defaults[name]}
        for name, reason in ignored_knobs(changed).items():
            raise ValueError(f"{name}={changed[name]!r} {reason}. Leave it at its default "
                             f"({defaults[name]!r}).")

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every knob's default: the fields' (the only place they are written) and registered knobs'."""
        fields = {f.name: f.default for f in dataclasses.fields(cls) if f.name != "extra"}
        return {**fields, **{name: knob.default for name, knob in KNOBS.items()}}

    @classmethod
    def knob_names(cls) -> list[str]:
        """All knob names: the fields in order, then the registered knobs (TOML keys, Optuna params)."""
        return list(cls.defaults())

    def knob(self, name: str) -> Any:
        """The value of any knob (field or registered); unknown names raise with the valid ones."""
        if name != "extra" and name in self.__dataclass_fields__:
            return getattr(self, name)
        if name in KNOBS:
            return dict(self.extra).get(name, KNOBS.get(name).default)
        raise ValueError(_unknown_key(name, "knob"))

    def __getattr__(self, name: str) -> Any:  # registered knobs read like fields: config.my_knob
        if not name.startswith("_") and name != "extra" and name in KNOBS:
            return self.knob(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def info(self) -> SamplerInfo:
        return get_sampler(self.sampler)

    @property
    def churn(self) -> Churn:
        return Churn(self.s_churn, self.s_tmin, self.s_tmax, self.s_noise, self.churn_noise)

    @property
    def convention(self) -> Convention:
        return Convention(self.endpoint, self.afs)

    @property
    def nfe(self) -> int:
        """Denoiser evaluations per sample: the registry formula under the end-point/AFS convention."""
        return self.convention.nfe(self.info, self.num_steps)

    @property
    def network_rounds(self) -> int:
        """Sequential network rounds per sample (= nfe for every registered solver)."""
        return self.convention.network_rounds(self.info, self.num_steps)

    def to_dict(self) -> dict[str, Any]:
        """Every knob by name (flat: registered knobs beside the fields)."""
        return {name: self.knob(name) for name in self.knob_names()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SamplerConfig:
        """Build from a flat mapping of knobs; unknown keys raise, naming the valid ones and a close match."""
        for key in d:
            if key not in cls.defaults():
                raise ValueError(_unknown_key(key, "SamplerConfig key"))
        fields = {k: v for k, v in d.items() if k not in KNOBS}
        return cls(**fields, extra={k: v for k, v in d.items() if k in KNOBS})


def _unknown_key(key: object, kind: str) -> str:
    valid = SamplerConfig.knob_names()
    close = close_match(key, valid)
    hint = f"; did you mean {close!r}?" if close else ""
    return f"unknown {kind} {key!r}{hint} Valid keys: {', '.join(valid)}"


def _checked_extra(extra: Any) -> tuple[tuple[str, Any], ...]:
    """Registered knobs as sorted (name, checked value) pairs; values equal to the default are dropped."""
    items = extra.items() if isinstance(extra, Mapping) else extra
    pairs = {}
    for name, value in items:
        if name not in KNOBS:
            raise ValueError(_unknown_key(name, "knob"))
        knob = KNOBS.get(name)
        value = knob.check(value)
        if value != knob.default:
            pairs[name] = value
    return tuple(sorted(pairs.items()))


def _parents(params: Mapping[str, Any]) -> dict[str, Any]:
    defaults = SamplerConfig.defaults()
    return {parent: params.get(parent, defaults[parent]) for parent in PARENT_KNOBS}


def knobs_read(parents: Mapping[str, str]) -> frozenset[str]:
    """Every knob a configuration with these parent choices reads (unset parents: SamplerConfig's default).

    E.g. ``knobs_read({"sampler": "heun", "discretization": "vp"})`` has ``epsilon_s`` and ``alpha`` but not
    ``rho``. Unknown names raise ValueError with the valid ones.
    """
    return read_by(_parents(parents))


def ignored_knobs(params: Mapping[str, Any]) -> dict[str, str]:
    """For each key of ``params`` that a configuration with ``params``' parents would not read: why.

    The reason reads "has no effect with sampler 'heun' and discretization 'vp'; it is read by
    discretization 'edm'". Parents missing from ``params`` take SamplerConfig's defaults.
    """
    valid = SamplerConfig.defaults()
    for key in params:
        if key not in valid:
            raise ValueError(_unknown_key(key, "knob"))
    parents = _parents(params)
    read = read_by(parents)
    context = [f"{parent} {parents[parent]!r}" for parent in PARENT_KNOBS if parent in read]
    where = ", ".join(context[:-1]) + f" and {context[-1]}"
    return {key: f"has no effect with {where}; it is read by {readers(key)}"
            for key in params if key not in read}


def with_denoiser_defaults(params: Mapping[str, Any], denoiser: Any) -> dict[str, Any]:
    """``params`` plus the denoiser's ``sampler_defaults`` for knobs it reads and ``params`` leaves unset.

    E.g. EDM2 networks declare ``{"churn_noise": "in_window"}`` (EDM2's churn noise stream); it is applied
    to churn samplers only, and a value given in ``params`` always wins.
    """
    suggested = dict(getattr(denoiser, "sampler_defaults", None) or {})
    read = knobs_read(params)
    return {**{k: v for k, v in suggested.items() if k in read and k not in params}, **params}
