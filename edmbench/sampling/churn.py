"""EDM Algorithm 2's stochasticity ("churn"): the one implementation every stochastic sampler calls."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edmbench._lazy import lazy_module
from edmbench.registry import check_name
from edmbench.sampling.schedules import LINEAR, NONE, Scaling, Schedule

if TYPE_CHECKING:
    from torch import Tensor

    from edmbench.sampling.noise import NoiseSource

torch = lazy_module("torch")  # imported on first use: this module's metadata is read without torch

GAMMA_MAX = math.sqrt(2) - 1  # EDM Alg. 2: gamma <= sqrt(2) - 1 at most doubles the noise variance
# When churn draws its noise eps_i (only while s_churn > 0): EDM1's generate.py draws on every step, also
# where gamma_i = 0; EDM2's generate_images.py draws only on steps inside [s_tmin, s_tmax]. Same images
# unless the window excludes some steps; then each seed's noise stream, hence its image, differs.
CHURN_NOISE = ("model", "every_step", "in_window")  # "model": the denoiser's own release (see for_denoiser)
CHURN_KNOBS = ("s_churn", "s_tmin", "s_tmax", "s_noise", "churn_noise")  # what a churn sampler reads


@dataclass(frozen=True)
class Churn:
    """The paper's S_churn, S_tmin, S_tmax, S_noise (``s_churn``, ``s_tmin``, ``s_tmax``, ``s_noise``).

    gamma_i = min(s_churn / N, sqrt(2) - 1) when s_tmin <= sigma_i <= s_tmax (inclusive), else 0.
    ``churn_noise``: ``"every_step"`` (EDM1) or ``"in_window"`` (EDM2), see ``CHURN_NOISE``; ``"model"``
    means the stream of the denoiser's release (:meth:`for_denoiser`) and reads as EDM1's until resolved.
    """

    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    churn_noise: str = "model"

    def __post_init__(self) -> None:
        check_name("churn_noise", self.churn_noise, CHURN_NOISE)
        if not (self.s_churn >= 0 and math.isfinite(self.s_churn)):
            raise ValueError(f"s_churn must be a finite number >= 0, got {self.s_churn}")
        if not self.s_tmin >= 0:
            raise ValueError(f"s_tmin must be >= 0, got {self.s_tmin}")
        if not self.s_tmin <= self.s_tmax:
            raise ValueError(f"s_tmin ({self.s_tmin}) must be <= s_tmax ({self.s_tmax})")
        if not (self.s_noise > 0 and math.isfinite(self.s_noise)):
            raise ValueError(f"s_noise must be a finite number > 0, got {self.s_noise}")

    def for_denoiser(self, denoiser: object) -> Churn:
        """``churn_noise = "model"`` resolved from the denoiser's ``sampler_defaults`` (EDM2 networks
        declare ``in_window``, their release's stream); every other denoiser gets EDM1's ``every_step``."""
        if self.churn_noise != "model":
            return self
        defaults = getattr(denoiser, "sampler_defaults", None) or {}
        return dataclasses.replace(self, churn_noise=defaults.get("churn_noise", "every_step"))

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
    eps has x's dtype (float64). When churn is active it is drawn on every step (``churn_noise =
    "every_step"``, EDM1: also where gamma = 0, so each image's stream is aligned across windows) or only
    on steps with gamma > 0 (``"in_window"``, EDM2). A step with gamma = 0 returns x itself.
    """
    if not churn.active:
        return x, t
    sigma = schedule.sigma(t)
    gamma = churn.gamma(sigma, num_steps)
    if gamma > 0 or churn.churn_noise != "in_window":
        eps = noise_source.randn_like(x)
    if gamma == 0:
        return x, t
    sigma_hat = float(round_sigma(torch.tensor(sigma + gamma * sigma, dtype=torch.float64)))
    t_hat = schedule.sigma_inv(sigma_hat)
    s_cur, s_hat = scaling(schedule, t)[0], scaling(schedule, t_hat)[0]
    std = math.sqrt(max(sigma_hat**2 - sigma**2, 0.0)) * s_hat * churn.s_noise
    return (s_hat / s_cur) * x + std * eps, t_hat
