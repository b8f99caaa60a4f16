"""Registers the low-NFE literature's discretizations with the sampling registry (issue 11).

- ``logsnr``, ``time_uniform``: no knobs; ``polynomial``: reads ``rho`` (EDM Eq. 5 on any range;
  diff-sampler's name for EDM's rho schedule; ``spacings.polynomial_levels`` also takes rho < 0, which
  SamplerConfig's ``rho > 0`` check does not allow). Default range [0.002, 80] (EDM's).
- ``knots``: the schedule as data. Either ``sigmas`` (an explicit list, e.g. a published schedule, checked by
  :func:`edmbench.sampling.knots.check_sigmas`; its ends are the default range; a final 0 is allowed and
  dropped, the end-point convention decides what follows the last level), or ``knot_1`` .. ``knot_{L-2}``,
  the searchable fractions of :mod:`edmbench.sampling.knots` (each a float in [0, 1]; ``MAX_KNOTS`` of
  them are registered). ``L`` = the number of levels = ``num_steps`` (end point ``zero``) or
  ``num_steps + 1`` (the ``sigma_min`` end points).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edmbench._lazy import lazy_module
from edmbench.sampling.discretizations import DISCRETIZATIONS, DiscretizationInfo, MissingKnobsError
from edmbench.sampling.knobs import KNOBS, Knob, register
from edmbench.sampling.knots import KNOT_PREFIX, check_sigmas, knot_names, levels_from_fractions
from edmbench.sampling.spacings import logsnr_levels, polynomial_levels, time_uniform_levels

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy_module("torch")  # imported on first use: this module's metadata is read without torch

MAX_KNOTS = 16  # enough for 17 steps under sigma_min, 18 under zero
EDM_RANGE = (0.002, 80.0)
KNOT_KNOBS = tuple(f"{KNOT_PREFIX}{k}" for k in range(1, MAX_KNOTS + 1))


def _edm_range(**_: Any) -> tuple[float, float]:
    return EDM_RANGE


def _check_knot(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"a knot fraction must be a number in [0, 1], got {value!r}")
    return float(value)


def _check_sigmas_knob(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    values = check_sigmas(list(value) if isinstance(value, tuple) else value)
    return tuple(values[:-1] if values[-1] == 0 else values)


def _knots_range(sigmas: tuple[float, ...] | None = None, **_: Any) -> tuple[float, float]:
    return (sigmas[-1], sigmas[0]) if sigmas else EDM_RANGE


def check_knots(num_levels: int, sigmas: tuple[float, ...] | None = None, **knots: float | None) -> None:
    """Refuse what no range can fix: both ``sigmas`` and fractions, a ``sigmas`` list of the wrong length, or
    fractions that are not exactly ``knot_1 .. knot_{L-2}`` (one error naming the missing and the unused)."""
    given = sorted((name for name, u in knots.items() if u is not None),
                   key=lambda n: int(n[len(KNOT_PREFIX):]))
    if sigmas is not None:
        if given:
            raise ValueError(f"knots: give either sigmas or {KNOT_PREFIX}k fractions, not both "
                             f"(got sigmas and {', '.join(given)})")
        check_sigmas(list(sigmas), num_levels=num_levels)
        return
    names = knot_names(num_levels)
    if len(names) > MAX_KNOTS:
        raise ValueError(f"knots: {num_levels} levels need {len(names)} fractions; at most {MAX_KNOTS}")
    missing = [n for n in names if n not in given]
    unused = [n for n in given if n not in names]
    if missing or unused:
        message = (f"knots with {num_levels} levels needs exactly {names[0] if names else 'no knot'}"
                   f"{'..' + names[-1] if len(names) > 1 else ''} (or sigmas = [...]); "
                   f"missing: {missing or 'none'}, not used: {unused or 'none'}")
        raise ValueError(message) if unused else MissingKnobsError(message, missing)


def knots_levels(num_levels: int, sigma_min: float, sigma_max: float, sigmas: tuple[float, ...] | None = None,
                 **knots: float | None) -> Tensor:
    """The ``knots`` discretization's levels: the explicit ``sigmas`` (checked against the resolved range)
    or the fractions ``knot_k``; :func:`check_knots` first (SamplerConfig has already called it)."""
    check_knots(num_levels, sigmas, **knots)
    if sigmas is not None:
        check_sigmas(list(sigmas), sigma_min=sigma_min * (1 - 1e-12), sigma_max=sigma_max * (1 + 1e-12))
        return torch.tensor(sigmas, dtype=torch.float64)
    return levels_from_fractions([knots[n] for n in knot_names(num_levels)], sigma_min, sigma_max)


def _register() -> None:
    if "knots" in DISCRETIZATIONS:
        return
    for info in (
        DiscretizationInfo("logsnr", lambda n, lo, hi: logsnr_levels(n, lo, hi), _edm_range, (),
                           "uniform in log sigma (= logSNR; DPM-Solver/UniPC)"),
        DiscretizationInfo("time_uniform", lambda n, lo, hi: time_uniform_levels(n, lo, hi), _edm_range, (),
                           "uniform in VP time on EDM's VP curve (DEIS)"),
        DiscretizationInfo("polynomial", lambda n, lo, hi, rho=7.0: polynomial_levels(n, lo, hi, rho),
                           _edm_range, ("rho",), "EDM Eq. 5 with exponent rho on any range"),
    ):
        register("discretization", info)
    knobs = [Knob("sigmas", None, _check_sigmas_knob, "explicit noise levels of the knots discretization")]
    knobs += [Knob(name, None, _check_knot, "searchable knots fraction (edmbench.sampling.knots)")
              for name in KNOT_KNOBS if name not in KNOBS]
    knots = DiscretizationInfo("knots", knots_levels, _knots_range, ("sigmas", *KNOT_KNOBS),
                               "explicit or searched noise levels", check=check_knots)
    register("discretization", knots, *knobs)


_register()
