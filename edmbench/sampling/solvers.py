"""Low-NFE solvers in EDM form (sigma(t) = t, s(t) = 1; DPM-Solver's lambda = -log sigma).

All share the registry's uniform signature and the EDM NFE convention: the step to sigma = 0 is a plain
Euler step, i.e. x_N = D(x_{N-1}; sigma_{N-1}). With a schedule that ends above 0 every step is a full
step of the method.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from edmbench.denoisers.base import Denoiser
from edmbench.sampling.churn import NO_CHURN, Churn, churn_step
from edmbench.sampling.noise import NoiseSource
from edmbench.sampling.ode import Callback, denoise, ode_derivative, start

# Adams-Bashforth coefficients for d_i, d_{i-1}, ... (iPNDM, Zhang & Chen 2023, Eq. 9 / PNDM)
AB_COEFFS = {1: (1.0,), 2: (3 / 2, -1 / 2), 3: (23 / 12, -16 / 12, 5 / 12),
             4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}
IPNDM_MAX_ORDER = 4


def _report(callback: Callback | None, i: int, x: Tensor, sigma: float, denoised: Tensor) -> None:
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})


def dpm_2(denoiser: Denoiser, noise: Tensor, sigmas: Tensor, *, noise_source: NoiseSource,
          class_labels: Tensor | None = None, churn: Churn = NO_CHURN,
          callback: Callback | None = None) -> Tensor:
    """DPM-Solver-2 (Lu et al. 2022, Alg. 1 with r = 1/2) in EDM form, with optional EDM churn.

    The intermediate point is Euler to sigma_mid = sqrt(sigma_hat sigma_next) (the lambda midpoint); the
    step then uses the slope there. NFE = 2N - 1.
    """
    x, ts = start(noise, sigmas)
    for i, (sigma, sigma_next) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        x_hat, sigma_hat = churn_step(x, sigma, churn, len(ts) - 1, noise_source=noise_source,
                                      round_sigma=denoiser.round_sigma)
        d, denoised = ode_derivative(denoiser, x_hat, sigma_hat, class_labels)
        if sigma_next == 0:
            x = x_hat + (sigma_next - sigma_hat) * d
        else:
            sigma_mid = math.sqrt(sigma_hat * sigma_next)
            d_mid, _ = ode_derivative(denoiser, x_hat + (sigma_mid - sigma_hat) * d, sigma_mid, class_labels)
            x = x_hat + (sigma_next - sigma_hat) * d_mid
        _report(callback, i, x, sigma, denoised)
    return x


def dpmpp_2m(denoiser: Denoiser, noise: Tensor, sigmas: Tensor, *, noise_source: NoiseSource,
             class_labels: Tensor | None = None, churn: Churn = NO_CHURN,
             callback: Callback | None = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2) in EDM form; the first step is first order. NFE = N.

    x_{i+1} = (sigma_{i+1}/sigma_i) x_i - expm1(-h_i) D_i', h_i = log(sigma_i / sigma_{i+1}),
    D_i' = (1 + 1/(2 r)) D_i - 1/(2 r) D_{i-1}, r = h_{i-1} / h_i.
    """
    x, ts = start(noise, sigmas)
    prev: tuple[Tensor, float] | None = None  # (D_{i-1}, h_{i-1})
    for i, (sigma, sigma_next) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        denoised = denoise(denoiser, x, sigma, class_labels)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma / sigma_next)
            corrected = denoised
            if prev is not None:
                r = prev[1] / h
                corrected = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * prev[0]
            x = (sigma_next / sigma) * x - math.expm1(-h) * corrected
            prev = (denoised, h)
        _report(callback, i, x, sigma, denoised)
    return x


def ab_weights(nodes: list[float]) -> list[float]:
    """Adams-Bashforth weights: sum_j w_j p(tau_j) = integral of p over [0, 1] for every polynomial p of
    degree < len(nodes) (i.e. the integrals of the Lagrange basis polynomials).

    ``nodes`` are past times in units of the step, tau_j = (t_{i-j} - t_i) / h (tau_0 = 0); uniform steps
    (0, -1, -2, -3) give the classic coefficients ``AB_COEFFS``.
    """
    k = len(nodes)
    vandermonde = np.array([[tau**m for tau in nodes] for m in range(k)], dtype=np.float64)
    moments = np.array([1 / (m + 1) for m in range(k)])  # integral of tau^m over [0, 1]
    return np.linalg.solve(vandermonde, moments).tolist()


def _adams_bashforth(denoiser: Denoiser, noise: Tensor, sigmas: Tensor, class_labels: Tensor | None,
                     callback: Callback | None, order: int, variable: bool) -> Tensor:
    """Adams-Bashforth on d = (x - D)/sigma with the last ``order`` slopes (lower order while the history
    fills; the step to sigma = 0 is Euler). ``variable``: weights from the actual step sizes."""
    if order not in AB_COEFFS:
        raise ValueError(f"order must be one of {sorted(AB_COEFFS)}, got {order}")
    x, ts = start(noise, sigmas)
    history: list[tuple[float, Tensor]] = []  # (sigma, slope), newest first
    for i, (sigma, sigma_next) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        d, denoised = ode_derivative(denoiser, x, sigma, class_labels)
        history = [(sigma, d), *history][:order]
        h = sigma_next - sigma
        if sigma_next == 0:
            weights = list(AB_COEFFS[1])
        elif variable:
            weights = ab_weights([(s - sigma) / h for s, _ in history])
        else:
            weights = list(AB_COEFFS[len(history)])
        x = x + h * sum(w * slope for w, (_, slope) in zip(weights, history, strict=False))
        _report(callback, i, x, sigma, denoised)
    return x


def ipndm(denoiser: Denoiser, noise: Tensor, sigmas: Tensor, *, noise_source: NoiseSource,
          class_labels: Tensor | None = None, churn: Churn = NO_CHURN, callback: Callback | None = None,
          order: int = IPNDM_MAX_ORDER) -> Tensor:
    """iPNDM (Zhang & Chen 2023): fixed Adams-Bashforth coefficients up to 4th order. NFE = N.

    Order ``order`` on uniform steps; on EDM's rho grid the fixed coefficients are only ~2nd order
    (measured), but strong at very low NFE. ``ipndm_v`` adapts the weights to the step sizes.
    """
    return _adams_bashforth(denoiser, noise, sigmas, class_labels, callback, order, variable=False)


def ipndm_v(denoiser: Denoiser, noise: Tensor, sigmas: Tensor, *, noise_source: NoiseSource,
            class_labels: Tensor | None = None, churn: Churn = NO_CHURN, callback: Callback | None = None,
            order: int = IPNDM_MAX_ORDER) -> Tensor:
    """iPNDM with variable-step Adams-Bashforth weights: order ``order`` on any grid. NFE = N."""
    return _adams_bashforth(denoiser, noise, sigmas, class_labels, callback, order, variable=True)


def euler_ancestral(denoiser: Denoiser, noise: Tensor, sigmas: Tensor, *, noise_source: NoiseSource,
                    class_labels: Tensor | None = None, churn: Churn = NO_CHURN,
                    callback: Callback | None = None, eta: float = 1.0) -> Tensor:
    """Euler-ancestral: Euler to sigma_down, then add noise of std sigma_up (DDPM ancestral step).

    sigma_up = min(sigma_next, eta sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2)) and
    sigma_down = sqrt(sigma_next^2 - sigma_up^2); eta = 0 is Euler. One draw per step. NFE = N.
    """
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    x, ts = start(noise, sigmas)
    for i, (sigma, sigma_next) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        d, denoised = ode_derivative(denoiser, x, sigma, class_labels)
        sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
        sigma_down = math.sqrt(sigma_next**2 - sigma_up**2)
        x = x + (sigma_down - sigma) * d
        eps = noise_source.randn_like(x)
        if sigma_up > 0:
            x = x + sigma_up * eps
        _report(callback, i, x, sigma, denoised)
    return x
