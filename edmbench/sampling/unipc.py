"""UniPC (Zhao et al. 2023): unified predictor-corrector multistep solver, data prediction, EDM form.

With lambda = -log(sigma), h = lambda_next - lambda and m = D(x; sigma) the exact step is
x_next = (sigma_next/sigma) x + sum_k psi_k(h) m^(k), psi_k(h) = int_0^h e^-(h-u) u^k/k! du.
The predictor replaces the derivatives by divided differences D_j = (m_j - m)/r_j of earlier outputs
(r_j = (lambda_j - lambda)/h) with weights a solving sum_j a_j r_j^(k-1) = k! psi_k / (h^k B(h)),
B(h) = psi_0(h) ("B2"); the corrector repeats this with the new output at sigma_next (r = 1), which the next
step reuses, so no extra evaluation is needed. Predictor order p, corrected order p + 1. NFE = N; the step to
sigma = 0 is a final denoise with the evaluation already made at the last predicted point (so, as in the
reference UniPC, the last correction does not reach the output; re-evaluating would cost N + 1).
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from edmbench.denoisers.base import Denoiser
from edmbench.sampling.churn import NO_CHURN, Churn
from edmbench.sampling.noise import NoiseSource
from edmbench.sampling.ode import Callback, denoise, start
from edmbench.sampling.registry import UNIPC_ORDERS  # the registry entry's metadata


def _psi(h: float, k_max: int) -> list[float]:
    """psi_0..psi_kmax at h (psi_0 = 1 - e^-h, psi_k = h^k/k! - psi_(k-1))."""
    psi = [-math.expm1(-h)]
    for k in range(1, k_max + 1):
        psi.append(h**k / math.factorial(k) - psi[-1])
    return psi


def _weights(ratios: list[float], h: float) -> list[float]:
    """a with sum_j a_j r_j^(k-1) = k! psi_k(h) / (h^k psi_0(h)) for k = 1..len(ratios)."""
    n = len(ratios)
    psi = _psi(h, n)
    rhs = [math.factorial(k) * psi[k] / (h**k * psi[0]) for k in range(1, n + 1)]
    powers = np.array([[r ** (k - 1) for r in ratios] for k in range(1, n + 1)], dtype=np.float64)
    return np.linalg.solve(powers, np.array(rhs)).tolist()


def _update(x: Tensor, m: Tensor, diffs: list[tuple[float, Tensor]], sigma: float, sigma_next: float,
            h: float) -> Tensor:
    """(sigma_next/sigma) x + psi_0 (m + sum_j a_j D_j) for divided differences ``diffs`` = [(r_j, D_j)]."""
    out = (sigma_next / sigma) * x + (-math.expm1(-h)) * m
    if diffs:
        weights = _weights([r for r, _ in diffs], h)
        out = out + (-math.expm1(-h)) * sum(a * d for a, (_, d) in zip(weights, diffs, strict=True))
    return out


def unipc(denoiser: Denoiser, noise: Tensor, sigmas: Tensor, *, noise_source: NoiseSource,
          class_labels: Tensor | None = None, churn: Churn = NO_CHURN, callback: Callback | None = None,
          order: int = 2) -> Tensor:
    """UniPC-``order`` with the B2 weighting (predictor order ``order``, lower while history fills)."""
    if order not in UNIPC_ORDERS:
        raise ValueError(f"unipc order must be one of {list(UNIPC_ORDERS)}, got {order}")
    x, ts = start(noise, sigmas)
    m = denoise(denoiser, x, ts[0], class_labels)
    history: list[tuple[float, Tensor]] = []  # (lambda, m) of earlier steps, newest first
    for i, (sigma, sigma_next) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        if sigma_next == 0:
            x_new = m  # the final step to sigma = 0: a denoise (EDM's last Euler step)
        else:
            lam, h = -math.log(sigma), math.log(sigma / sigma_next)
            diffs = [((lam_j - lam) / h, (m_j - m) / ((lam_j - lam) / h)) for lam_j, m_j in history]
            x_pred = _update(x, m, diffs[:order - 1], sigma, sigma_next, h)
            m_next = denoise(denoiser, x_pred, sigma_next, class_labels)
            x_new = _update(x, m, [*diffs[:order - 1], (1.0, m_next - m)], sigma, sigma_next, h)
            history = [(lam, m), *history][:max(order - 1, 0)]
        if callback is not None:
            callback({"i": i, "x": x_new, "sigma": sigma, "sigma_hat": sigma, "denoised": m})
        x = x_new
        if sigma_next != 0:
            m = m_next
    return x
