"""Oracles for the schedule tests: a small exact Gaussian mixture and its high-accuracy ODE solution."""

from __future__ import annotations

import pytest
import torch

from edmbench.denoisers.analytic import GaussianMixtureDenoiser


def make_gmm() -> GaussianMixtureDenoiser:
    """4 well-separated components in 2 dims with correlated covariances (fixed by seed 1), float64 out."""
    g = torch.Generator().manual_seed(1)
    means = torch.tensor([[-1.5, 0.5], [1.0, 1.2], [0.3, -1.4], [1.6, -0.4]], dtype=torch.float64)
    a = torch.randn(4, 2, 2, generator=g, dtype=torch.float64) * 0.15
    covs = a @ a.transpose(1, 2) + 0.01 * torch.eye(2, dtype=torch.float64)
    return GaussianMixtureDenoiser([0.3, 0.3, 0.2, 0.2], means, covs, image_shape=(1, 1, 2),
                                   out_dtype=torch.float64)


@pytest.fixture(scope="session")
def gmm() -> GaussianMixtureDenoiser:
    return make_gmm()


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every module here runs on one torch thread (``tests/conftest.py``)."""
