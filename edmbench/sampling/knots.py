"""``knots``: a schedule given as explicit noise levels, or as free fractions that Optuna can search.

Explicit: a published schedule pasted as a list of sigmas (descending, > 0, optionally ending in 0, which is
then the end-point convention ``zero``), checked by :func:`check_sigmas`.

Searchable: ``L`` levels from ``sigma_max`` to ``sigma_min`` have ``L - 1`` gaps in log sigma (total
T = log sigma_max - log sigma_min) and ``L - 2`` interior levels. Each interior level is one free fraction
u_k in [0, 1] of the log-sigma length that is still free, after reserving a minimum gap delta = 1e-6 T for
every gap still to come:

    gap_k = delta + u_k (R_{k-1} - (L - k) delta),   R_k = R_{k-1} - gap_k,   R_0 = T,   k = 1..L-2,

(the last gap is what remains, >= delta). So *every* point of [0, 1]^(L-2) is a strictly decreasing schedule
inside the range (no two levels closer than delta, far above float64 resolution), and every schedule with
those ends whose gaps exceed delta has exactly one such point (:func:`fractions_from_levels`), which is how
rho = 7 or an optimiser's output is enqueued into a study. The Optuna parameters are ``knot_1`` ..
``knot_{L-2}`` (:func:`knot_names`), each a float in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from edmbench._lazy import lazy_module

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy_module("torch")  # imported on first use: this module's metadata is read without torch

KNOT_PREFIX = "knot_"
KNOT_LOW, KNOT_HIGH = 0.0, 1.0  # Optuna's range for each fraction (closed: both ends are valid)
MIN_GAP = 1e-6  # the reserved gap delta, as a fraction of the log-sigma range T


def check_sigmas(sigmas: Sequence[float], *, num_levels: int | None = None,
                 sigma_min: float | None = None, sigma_max: float | None = None) -> list[float]:
    """Validate an explicit schedule: numbers, > 0 except a final 0, strictly decreasing, of the expected
    length and inside [sigma_min, sigma_max] (each check only where given). Returns the floats.

    Raises ValueError with one line that names the offending entry and what is valid.
    """
    if isinstance(sigmas, str | bytes) or not isinstance(sigmas, Sequence):
        raise ValueError(f"sigmas must be a list of numbers, got {sigmas!r}")
    values: list[float] = []
    for i, s in enumerate(sigmas):
        if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s):
            raise ValueError(f"sigmas[{i}] = {s!r} is not a finite number")
        values.append(float(s))
    nonzero = values[:-1] if values and values[-1] == 0 else values
    if num_levels is not None and len(nonzero) != num_levels:
        raise ValueError(f"sigmas has {len(nonzero)} non-zero levels, expected {num_levels} "
                         f"(num_steps and the end-point convention fix the count)")
    if len(nonzero) < 1:
        raise ValueError("sigmas must hold at least one level > 0")
    for i, s in enumerate(nonzero):
        if s <= 0:
            raise ValueError(f"sigmas[{i}] = {s} must be > 0 (only the last entry may be 0)")
    for i in range(1, len(values)):
        if not values[i] < values[i - 1]:
            raise ValueError(f"sigmas must be strictly decreasing: sigmas[{i}] = {values[i]} is not below "
                             f"sigmas[{i - 1}] = {values[i - 1]}")
    if sigma_max is not None and nonzero[0] > sigma_max * (1 + 1e-12):
        raise ValueError(f"sigmas[0] = {nonzero[0]} exceeds sigma_max = {sigma_max}")
    if sigma_min is not None and nonzero[-1] < sigma_min * (1 - 1e-12):
        raise ValueError(f"sigmas[{len(nonzero) - 1}] = {nonzero[-1]} is below sigma_min = {sigma_min}")
    return values


def knot_names(num_levels: int) -> list[str]:
    """The Optuna parameter names of a searched schedule with ``num_levels`` levels."""
    return [f"{KNOT_PREFIX}{k}" for k in range(1, num_levels - 1)]


def _log_range(sigma_min: float, sigma_max: float) -> tuple[float, float]:
    if not 0 < sigma_min < sigma_max < math.inf:
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got [{sigma_min}, {sigma_max}]")
    total = math.log(sigma_max) - math.log(sigma_min)
    return total, MIN_GAP * total


def levels_from_fractions(fractions: Sequence[float], sigma_min: float, sigma_max: float) -> Tensor:
    """``len(fractions) + 2`` levels (float64, sigma_max .. sigma_min) from fractions in [0, 1]."""
    total, delta = _log_range(sigma_min, sigma_max)
    num_gaps = len(fractions) + 1
    remaining, logs = total, [math.log(sigma_max)]
    for k, u in enumerate(fractions, start=1):
        if isinstance(u, bool) or not isinstance(u, int | float) or not 0 <= u <= 1:
            raise ValueError(f"{KNOT_PREFIX}{k} = {u!r} must be a number in [0, 1]")
        gap = delta + u * max(remaining - (num_gaps - k + 1) * delta, 0.0)
        remaining -= gap
        logs.append(logs[-1] - gap)
    levels = torch.exp(torch.tensor(logs, dtype=torch.float64))
    levels[0] = sigma_max
    return torch.cat([levels, torch.tensor([sigma_min], dtype=torch.float64)])


def fractions_from_levels(levels: Sequence[float] | Tensor) -> list[float]:
    """The inverse of :func:`levels_from_fractions` (``levels`` strictly decreasing, > 0, no final 0;
    every log-sigma gap must exceed the reserved minimum gap)."""
    values = check_sigmas([float(v) for v in levels])
    if values[-1] == 0:
        raise ValueError("pass the non-zero levels only (drop the final 0)")
    if len(values) < 2:
        raise ValueError("a knots schedule needs at least 2 levels (sigma_max and sigma_min)")
    total, delta = _log_range(values[-1], values[0])
    logs = [math.log(v) for v in values]
    num_gaps, remaining, out = len(values) - 1, total, []
    for k in range(1, len(values) - 1):
        gap = logs[k - 1] - logs[k]
        free = remaining - (num_gaps - k + 1) * delta
        if gap < delta or free <= 0:
            raise ValueError(f"sigmas[{k}] = {values[k]} is closer to its neighbour than the minimum gap "
                             f"({MIN_GAP} of the log-sigma range)")
        out.append(min((gap - delta) / free, 1.0))
        remaining -= gap
    return out


def knot_params(levels: Sequence[float] | Tensor) -> dict[str, float]:
    """Optuna parameters ``{knot_k: u_k}`` that reproduce ``levels`` (to enqueue a known schedule)."""
    fractions = fractions_from_levels(levels)
    return dict(zip(knot_names(len(fractions) + 2), fractions, strict=True))


def suggest_levels(trial, num_levels: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Suggest a valid decreasing schedule on an Optuna trial (one float per interior level)."""
    fractions = [trial.suggest_float(name, KNOT_LOW, KNOT_HIGH) for name in knot_names(num_levels)]
    return levels_from_fractions(fractions, sigma_min, sigma_max)
