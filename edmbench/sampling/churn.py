"""EDM Algorithm 2's stochasticity ("churn"): the one implementation every stochastic sampler calls."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from edmbench.sampling.noise import NoiseSource
from edmbench.sampling.schedules import LINEAR, NONE, Scaling, Schedule

GAMMA_MAX = math.sqrt(2) - 1  # EDM Alg. 2: gamma <= sqrt(2) - 1 at most doubles the noise variance


@dataclass(frozen=True)
class Churn:
    """The paper's S_churn, S_tmin, S_tmax, S_noise (``s_churn``, ``s_tmin``, ``s_tmax``, ``s_noise``).

    gamma_i = min(s_churn / N, sqrt(2) - 1) when s_tmin <= sigma_i <= s_tmax (inclusive), else 0.
    """

    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0

    def __post_init__(self) -> None:
        if not (self.s_churn >= 0 and math.isfinite(self.s_churn)):
            raise ValueError(f"s_churn must be a finite number >= 0, got {self.s_churn}")
        if not self.s_tmin >= 0:
            raise ValueError(f"s_tmin must be >= 0, got {self.s_tmin}")
        if not self.s_tmin <= self.s_tmax:
            raise ValueError(f"s_tmin ({self.s_tmin}) must be <= s_tmax ({self.s_tmax})")
        if not (self.s_noise > 0 and math.isfinite(self.s_noise)):
            raise ValueError(f"s_noise must be a finite number > 0, got {self.s_noise}")

    @property
    def active(self) -> bool:
        """False when no step can be churned (s_churn = 0): then nothing is drawn and x is untouched."""
        return self.s_churn > 0

    def gamma(self, sigma: float, num_steps: int) -> float:
        """gamma_i for a step at (rounded) noise level ``sigma`` of an ``num_steps``-step schedule."""
        if self.s_tmin <= sigma <= self.s_tmax:
            return min(self.s_churn / num_steps, GAMMA_MAX)
        return 0.0


NO_CHURN = Churn()


def churn_step(x: Tensor, t: float, churn: Churn, num_steps: int, *, noise_source: NoiseSource,
               round_sigma: Callable[[Tensor], Tensor], schedule: Schedule = LINEAR,
               scaling: Scaling = NONE) -> tuple[Tensor, float]:
    """EDM Alg. 2 lines 4-6 in the general sigma(t)/s(t) form (fact sheet Sec. 2): returns (x_hat, t_hat).

    t_hat = sigma^-1(round_sigma(sigma(t) + gamma sigma(t))) and
    x_hat = s(t_hat)/s(t) x + sqrt(sigma(t_hat)^2 - sigma(t)^2) s(t_hat) s_noise eps.
    When churn is active, eps is drawn on *every* step (also where gamma = 0), float64 like x, so each
    image's noise stream stays aligned across windows; a step with gamma = 0 returns x itself.
    """
    if not churn.active:
        return x, t
    eps = noise_source.randn_like(x)
    sigma = schedule.sigma(t)
    gamma = churn.gamma(sigma, num_steps)
    if gamma == 0:
        return x, t
    sigma_hat = float(round_sigma(torch.tensor(sigma + gamma * sigma, dtype=torch.float64)))
    t_hat = schedule.sigma_inv(sigma_hat)
    s_cur, s_hat = scaling(schedule, t)[0], scaling(schedule, t_hat)[0]
    std = math.sqrt(max(sigma_hat**2 - sigma**2, 0.0)) * s_hat * churn.s_noise
    return (s_hat / s_cur) * x + std * eps, t_hat
