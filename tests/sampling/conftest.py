"""Shared oracles for the sampling tests: a small full-covariance Gaussian mixture (float64 out)."""

from __future__ import annotations

import pytest
import torch

from edmbench.denoisers.analytic import GaussianMixtureDenoiser


def make_gmm(out_dtype: torch.dtype = torch.float64, classes: bool = False) -> GaussianMixtureDenoiser:
    """3 components in 2 dims with correlated covariances (fixed by seed 0)."""
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[-1.0, 0.5], [1.0, 1.0], [0.3, -1.2]], dtype=torch.float64)
    a = torch.randn(3, 2, 2, generator=g, dtype=torch.float64) * 0.4
    covs = a @ a.transpose(1, 2) + 0.05 * torch.eye(2, dtype=torch.float64)
    return GaussianMixtureDenoiser([0.3, 0.5, 0.2], means, covs, image_shape=(1, 1, 2),
                                   component_classes=[0, 1, 1] if classes else None, out_dtype=out_dtype)


@pytest.fixture(scope="session")
def gmm64() -> GaussianMixtureDenoiser:
    return make_gmm(torch.float64)


@pytest.fixture(scope="session")
def gmm32() -> GaussianMixtureDenoiser:
    return make_gmm(torch.float32)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every module here runs on one torch thread (``tests/conftest.py``)."""
