"""Euler and Heun on the probability-flow ODE in the general sigma(t)/s(t) form (EDM Alg. 1 and 2).

dx/dt = (sigma'/sigma + s'/s) x - (sigma' s / sigma) D(x/s; sigma(t))   (EDM Eq. 4)

With the defaults sigma(t) = t and s(t) = 1 this is EDM's sampler: d = (x - D(x; t)) / t, and the
arithmetic is arranged so that it is the same float64 computation as EDM Algorithm 2. Heun's last step
(to sigma = 0) is Euler, so Heun costs 2N - 1 evaluations. ``alpha`` is EDM's generalised second-order
step (alpha = 1: Heun/trapezoid, alpha = 1/2: midpoint).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from edmbench.denoisers.base import Denoiser
from edmbench.sampling.churn import NO_CHURN, Churn, churn_step
from edmbench.sampling.noise import NoiseSource
from edmbench.sampling.schedules import LINEAR, NONE, Scaling, Schedule

Callback = Callable[[dict], None]


def denoise(denoiser: Denoiser, x: Tensor, sigma: float, class_labels: Tensor | None) -> Tensor:
    """D(x; sigma) in float64, sigma passed as a 0-dim float64 tensor (broadcast over the batch)."""
    sigma_t = torch.tensor(sigma, dtype=torch.float64, device=x.device)
    return denoiser(x, sigma_t, class_labels).to(torch.float64)


def ode_derivative(denoiser: Denoiser, x: Tensor, t: float, class_labels: Tensor | None,
                   schedule: Schedule = LINEAR, scaling: Scaling = NONE) -> tuple[Tensor, Tensor]:
    """(dx/dt, denoised) at time t; one denoiser evaluation, made at x/s(t) and sigma(t)."""
    sigma, sigma_dot = schedule.sigma(t), schedule.sigma_deriv(t)
    s, s_dot = scaling(schedule, t)
    denoised = denoise(denoiser, x / s, sigma, class_labels)
    d = (x - s * denoised) * sigma_dot / sigma
    if s_dot != 0:
        d = d + (s_dot / s) * x
    return d, denoised


def start(noise: Tensor, sigmas: Tensor, schedule: Schedule = LINEAR,
          scaling: Scaling = NONE) -> tuple[Tensor, list[float]]:
    """float64 x_0 = noise * sigma(t_0) * s(t_0) and the time steps t_i = sigma^-1(sigma_i), t_N = 0.

    (With EDM's vp schedule on the edm range, beta_min' < 0 and sigma^-1(0) > 0; EDM still ends at t = 0.)
    """
    if noise.ndim < 2 or not noise.is_floating_point():
        raise ValueError(f"noise must be a float tensor [B, C, H, W], got {noise.dtype} {tuple(noise.shape)}")
    ts = [schedule.sigma_inv(s) if s > 0 else 0.0 for s in sigmas.tolist()]  # t_N = 0 as in EDM
    return noise.to(torch.float64) * (schedule.sigma(ts[0]) * scaling(schedule, ts[0])[0]), ts


def _second_order(denoiser: Denoiser, x_hat: Tensor, d: Tensor, t_hat: float, t_next: float,
                  alpha: float, class_labels: Tensor | None, schedule: Schedule, scaling: Scaling) -> Tensor:
    """EDM's generalised 2nd-order step: slope at t' = t_hat + alpha h, weights 1 - 1/(2a), 1/(2a)."""
    h = t_next - t_hat
    t_prime = t_next if alpha == 1 else t_hat + alpha * h
    x_prime = x_hat + (alpha * h) * d
    d_prime, _ = ode_derivative(denoiser, x_prime, t_prime, class_labels, schedule, scaling)
    return x_hat + h * ((1 - 1 / (2 * alpha)) * d + (1 / (2 * alpha)) * d_prime)


def ode_sampler(denoiser: Denoiser, noise: Tensor, sigmas: Tensor, *, noise_source: NoiseSource,
                class_labels: Tensor | None = None, churn: Churn = NO_CHURN, callback: Callback | None = None,
                schedule: Schedule = LINEAR, scaling: Scaling = NONE, alpha: float | None = 1.0) -> Tensor:
    """EDM Alg. 1/2 loop; ``alpha=None`` gives Euler. Steps ending at sigma = 0 are Euler."""
    x, ts = start(noise, sigmas, schedule, scaling)
    num_steps = len(ts) - 1
    for i, (t_cur, t_next) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        x_hat, t_hat = churn_step(x, t_cur, churn, num_steps, noise_source=noise_source,
                                  round_sigma=denoiser.round_sigma, schedule=schedule, scaling=scaling)
        d, denoised = ode_derivative(denoiser, x_hat, t_hat, class_labels, schedule, scaling)
        if alpha is None or t_next == 0:
            x = x_hat + (t_next - t_hat) * d
        else:
            x = _second_order(denoiser, x_hat, d, t_hat, t_next, alpha, class_labels, schedule, scaling)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": schedule.sigma(t_cur), "sigma_hat": schedule.sigma(t_hat),
                      "denoised": denoised})
    return x


def euler(denoiser: Denoiser, noise: Tensor, sigmas: Tensor, *, noise_source: NoiseSource,
          class_labels: Tensor | None = None, churn: Churn = NO_CHURN, callback: Callback | None = None,
          schedule: Schedule = LINEAR, scaling: Scaling = NONE) -> Tensor:
    """Euler (first order, NFE = N), with optional EDM churn and any sigma(t)/s(t)."""
    return ode_sampler(denoiser, noise, sigmas, noise_source=noise_source, class_labels=class_labels,
                       churn=churn, callback=callback, schedule=schedule, scaling=scaling, alpha=None)


def heun(denoiser: Denoiser, noise: Tensor, sigmas: Tensor, *, noise_source: NoiseSource,
         class_labels: Tensor | None = None, churn: Churn = NO_CHURN, callback: Callback | None = None,
         schedule: Schedule = LINEAR, scaling: Scaling = NONE, alpha: float = 1.0) -> Tensor:
    """EDM's 2nd-order sampler (alpha = 1: Heun; NFE = 2N - 1), with optional churn and sigma(t)/s(t)."""
    if not (0 < alpha <= 1 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    return ode_sampler(denoiser, noise, sigmas, noise_source=noise_source, class_labels=class_labels,
                       churn=churn, callback=callback, schedule=schedule, scaling=scaling, alpha=alpha)
