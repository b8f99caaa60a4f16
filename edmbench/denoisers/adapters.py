"""Adapters that bring non-EDM models into the Denoiser interface.

- ``CallableDenoiser``: any ``f(x, sigma, class_labels) -> denoised`` already in EDM's convention
  (x = x0 + sigma * n).
- ``EpsilonDDPMDenoiser``: a discrete-time epsilon-prediction DDPM network ``eps(x_t, t, class_labels)``
  with a beta schedule (VP form, Ho et al. 2020). With alpha_bar_t = prod_{s<=t}(1 - beta_s) the VP state
  x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) n is EDM's x scaled by s = sqrt(alpha_bar_t), with
  sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) (EDM Table 1, "VP" column), so

      D(x; sigma_t) = x - sigma_t * eps(x / sqrt(1 + sigma_t^2), t)

  i.e. c_skip = 1, c_out = -sigma, c_in = 1/sqrt(sigma^2 + 1), and c_noise = t, the index of the nearest
  table entry (as for iDDPM: ``round_sigma`` snaps to the table).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from edmbench.denoisers.base import as_sigma_tensor


def _image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {tuple(image_shape)}")
    return shape  # type: ignore[return-value]


def _check_output(out: Tensor, x: Tensor, what: str) -> Tensor:
    if not isinstance(out, Tensor) or out.shape[0] != x.shape[0] or out.shape[2:] != x.shape[2:]:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{what} returned {shape}, expected a tensor shaped like x {tuple(x.shape)}")
    return out


class CallableDenoiser:
    """Wrap ``fn(x, sigma, class_labels) -> denoised`` (EDM convention) as a Denoiser.

    ``fn`` receives a copy of ``x`` in ``input_dtype`` and ``sigma`` as a ``[B]`` tensor of that dtype.
    ``round_sigma`` defaults to the identity.
    """

    def __init__(
        self,
        fn: Callable[[Tensor, Tensor, Tensor | None], Tensor],
        image_shape: Sequence[int],
        sigma_min: float = 0.0,
        sigma_max: float = math.inf,
        label_dim: int = 0,
        round_sigma: Callable[[Tensor], Tensor] | None = None,
        input_dtype: torch.dtype = torch.float32,
        out_dtype: torch.dtype = torch.float32,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable f(x, sigma, class_labels), got {type(fn).__name__}")
        if not 0 <= sigma_min < sigma_max:
            raise ValueError(f"need 0 <= sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.fn = fn
        self.image_shape = _image_shape(image_shape)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.label_dim = int(label_dim)
        self._round = round_sigma
        self.input_dtype, self.out_dtype = input_dtype, out_dtype

    def round_sigma(self, sigma: Tensor | float) -> Tensor:
        sigma = torch.as_tensor(sigma)
        return sigma if self._round is None else self._round(sigma)

    def __call__(self, x: Tensor, sigma: Tensor | float, class_labels: Tensor | None = None) -> Tensor:
        s = as_sigma_tensor(sigma, x).reshape(-1).to(self.input_dtype)
        out = self.fn(x.to(self.input_dtype, copy=True), s, class_labels)
        return _check_output(out, x, "fn").to(self.out_dtype)


def linear_betas(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM's linear beta schedule (Ho et al. 2020), float64."""
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """iDDPM's cosine schedule (Nichol & Dhariwal 2021): beta_t = 1 - abar(t+1)/abar(t), capped, float64."""
    t = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    abar = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


class EpsilonDDPMDenoiser:
    """Discrete epsilon-prediction DDPM ``eps_model(x_t, t, class_labels)`` as an EDM Denoiser (VP form).

    ``betas [T]`` is the training schedule; timestep ``t`` (0-based) has
    sigma_t = sqrt((1 - abar_t) / abar_t). Extra output channels (learned variance) are dropped.
    """

    def __init__(
        self,
        eps_model: Callable[[Tensor, Tensor, Tensor | None], Tensor],
        betas: Sequence[float] | Tensor,
        image_shape: Sequence[int],
        label_dim: int = 0,
        input_dtype: torch.dtype = torch.float32,
        out_dtype: torch.dtype = torch.float32,
    ) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if betas.numel() < 2 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("betas must hold at least 2 values, each in (0, 1)")
        alpha_bar = torch.cumprod(1 - betas, dim=0)
        self.sigmas = ((1 - alpha_bar) / alpha_bar).sqrt()  # increasing in t
        self.eps_model = eps_model
        self.image_shape = _image_shape(image_shape)
        self.label_dim = int(label_dim)
        self.input_dtype, self.out_dtype = input_dtype, out_dtype

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def timestep(self, sigma: Tensor | float) -> Tensor:
        """Index t of the table entry nearest to ``sigma`` (int64, same shape)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        t = (sigma.reshape(-1, 1).cpu() - self.sigmas.reshape(1, -1)).abs().argmin(dim=1)
        return t.reshape(sigma.shape).to(sigma.device)

    def round_sigma(self, sigma: Tensor | float) -> Tensor:
        sigma = torch.as_tensor(sigma)
        return self.sigmas[self.timestep(sigma).cpu()].to(device=sigma.device, dtype=sigma.dtype)

    def __call__(self, x: Tensor, sigma: Tensor | float, class_labels: Tensor | None = None) -> Tensor:
        s = as_sigma_tensor(sigma, x)
        t = self.timestep(s.reshape(-1))
        x64 = x.to(torch.float64)
        x_t = (x64 / (s**2 + 1).sqrt()).to(self.input_dtype)
        eps = _check_output(self.eps_model(x_t, t, class_labels), x, "eps_model")
        return (x64 - s * eps[:, : x.shape[1]].to(torch.float64)).to(self.out_dtype)
