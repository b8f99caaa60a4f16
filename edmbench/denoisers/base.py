"""The Denoiser contract D(x; sigma) shared by networks, analytic oracles and adapters (EDM Sec. 2)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Denoiser(Protocol):
    """D(x; sigma) -> denoised, float32 out, never modifies ``x``.

    ``sigma`` is a Python float, a 0-dim tensor or a per-sample ``[B]`` tensor. ``class_labels`` is one-hot
    ``[B, label_dim]`` (or ``None``). ``round_sigma`` maps noise levels to those the model supports
    (identity except for iDDPM's discrete table, EDM Table 1).
    """

    sigma_min: float
    sigma_max: float
    image_shape: tuple[int, int, int]
    label_dim: int

    def __call__(self, x: Tensor, sigma: Tensor | float, class_labels: Tensor | None = None) -> Tensor: ...

    def round_sigma(self, sigma: Tensor | float) -> Tensor: ...


def as_sigma_tensor(sigma: Tensor | float, x: Tensor) -> Tensor:
    """Broadcastable ``[B, 1, 1, 1]``-style sigma (float64) for an ``x`` of any rank."""
    s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or have shape [{x.shape[0]}], got {tuple(s.shape)}")
    return s.reshape(-1, *([1] * (x.ndim - 1)))


class CountingDenoiser:
    """Wraps a Denoiser and counts its evaluations.

    ``calls`` counts invocations; ``sample_evaluations`` counts per-sample evaluations (batch rows).
    The NFE of a sampling run over one batch equals ``calls`` (EDM Sec. 3: evaluations per sample).
    """

    def __init__(self, inner: Denoiser) -> None:
        self.inner = inner
        self.calls = 0
        self.sample_evaluations = 0

    def __call__(self, x: Tensor, sigma: Tensor | float, class_labels: Tensor | None = None) -> Tensor:
        self.calls += 1
        self.sample_evaluations += int(x.shape[0])
        return self.inner(x, sigma, class_labels)

    def reset(self) -> None:
        self.calls = 0
        self.sample_evaluations = 0

    def round_sigma(self, sigma: Tensor | float) -> Tensor:
        return self.inner.round_sigma(sigma)

    @property
    def sigma_min(self) -> float:
        return self.inner.sigma_min

    @property
    def sigma_max(self) -> float:
        return self.inner.sigma_max

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.inner.image_shape

    @property
    def label_dim(self) -> int:
        return self.inner.label_dim
