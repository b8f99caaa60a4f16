"""Adapters: any callable and discrete epsilon-prediction DDPM networks enter the Denoiser interface.

Oracle for the DDPM adapter: the exact epsilon-predictor of Gaussian data, built from the analytic
Gaussian denoiser D* by eps*(x_t, t) = (x_t - sqrt(abar_t) D*(x_t / sqrt(abar_t); sigma_t)) / sqrt(1 - abar_t)
(the VP <-> EDM change of variables, EDM Table 1); the adapter must give back D* on the table.
"""

from __future__ import annotations

import math

import pytest
import torch

from edmbench.denoisers.adapters import CallableDenoiser, EpsilonDDPMDenoiser, cosine_betas, linear_betas
from edmbench.denoisers.analytic import GaussianDenoiser
from edmbench.denoisers.base import CountingDenoiser, Denoiser


def exact_eps_model(oracle: GaussianDenoiser, betas: torch.Tensor):
    abar = torch.cumprod(1 - betas, dim=0)

    def eps(x_t, t, class_labels=None):
        a = abar[t].reshape(-1, 1, 1, 1)
        sigma = ((1 - abar[t]) / abar[t]).sqrt()
        denoised = oracle(x_t / a.sqrt(), sigma).to(torch.float64)
        return (x_t - a.sqrt() * denoised) / (1 - a).sqrt()

    return eps


@pytest.mark.parametrize("betas", [linear_betas(), cosine_betas()], ids=["linear", "cosine"])
def test_epsilon_ddpm_adapter_recovers_the_exact_denoiser(betas) -> None:
    oracle = GaussianDenoiser(image_shape=(1, 2, 2), mean=0.3, std=0.5, out_dtype=torch.float64)
    den = EpsilonDDPMDenoiser(
        exact_eps_model(oracle, betas),
        betas,
        image_shape=(1, 2, 2),
        input_dtype=torch.float64,
        out_dtype=torch.float64,
    )
    assert isinstance(den, Denoiser)
    t = torch.tensor([0, 10, 250, 500, 999])
    sigma = den.sigmas[t]
    x = torch.randn(5, 1, 2, 2, dtype=torch.float64) * (1 + sigma.reshape(-1, 1, 1, 1))
    torch.testing.assert_close(den(x, sigma), oracle(x, sigma), rtol=1e-10, atol=1e-10)
    assert torch.equal(den.timestep(sigma), t)


def test_epsilon_ddpm_table_and_rounding() -> None:
    betas = linear_betas()
    den = EpsilonDDPMDenoiser(lambda x, t, c: torch.zeros_like(x), betas, image_shape=(1, 2, 2))
    # sigma_t = sqrt((1 - abar_t) / abar_t) with abar_0 = 1 - beta_0 = 1 - 1e-4
    assert den.sigma_min == pytest.approx(math.sqrt(1e-4 / (1 - 1e-4)), rel=1e-12)
    abar_last = torch.prod(1 - betas).item()
    assert den.sigma_max == pytest.approx(math.sqrt((1 - abar_last) / abar_last), rel=1e-9)
    assert torch.all(den.sigmas[1:] > den.sigmas[:-1])
    mid = (den.sigmas[100] * 0.6 + den.sigmas[101] * 0.4).item()  # nearer to entry 100
    assert den.round_sigma(torch.tensor([mid], dtype=torch.float64)).item() == den.sigmas[100].item()
    x = torch.randn(2, 1, 2, 2)
    out = den(x, 0.5)  # eps = 0 -> D = x; float32 out
    assert out.dtype == torch.float32 and torch.equal(out, x)


def test_epsilon_ddpm_passes_int_timesteps_and_labels_and_drops_variance_channels() -> None:
    seen = {}

    def eps(x_t, t, class_labels):
        seen.update(t=t, labels=class_labels, dtype=x_t.dtype)
        return torch.cat([torch.ones_like(x_t), torch.full_like(x_t, 7.0)], dim=1)  # [eps, variance]

    den = EpsilonDDPMDenoiser(eps, linear_betas(), image_shape=(3, 4, 4), label_dim=5)
    x = torch.zeros(2, 3, 4, 4)
    labels = torch.eye(5)[:2]
    sigma = den.sigmas[[3, 700]]
    out = den(x, sigma, labels)
    assert seen["t"].tolist() == [3, 700] and seen["t"].dtype == torch.int64
    assert seen["labels"] is labels and seen["dtype"] == torch.float32
    torch.testing.assert_close(out, (-sigma).float().reshape(-1, 1, 1, 1).expand(2, 3, 4, 4))


def test_callable_adapter() -> None:
    calls = []

    def fn(x, sigma, class_labels):
        calls.append(sigma)
        x.mul_(0)  # a careless callable; the adapter must hand it a copy
        return x + sigma.reshape(-1, 1, 1, 1)

    den = CountingDenoiser(CallableDenoiser(fn, image_shape=(1, 2, 2), sigma_min=0.01, sigma_max=50.0))
    x = torch.randn(3, 1, 2, 2)
    x_copy = x.clone()
    out = den(x, 2.0)
    assert torch.equal(x, x_copy)
    assert out.dtype == torch.float32 and torch.equal(out, torch.full_like(x, 2.0))
    assert calls[0].shape == (3,) and den.calls == 1
    assert (den.sigma_min, den.sigma_max, den.label_dim, den.image_shape) == (0.01, 50.0, 0, (1, 2, 2))
    assert torch.equal(den.round_sigma(torch.tensor(0.3)), torch.tensor(0.3))


def test_adapters_reject_bad_input() -> None:
    with pytest.raises(TypeError, match="callable"):
        CallableDenoiser(3, image_shape=(1, 2, 2))
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        CallableDenoiser(lambda x, s, c: x, image_shape=(1, 2, 2), sigma_min=5, sigma_max=1)
    with pytest.raises(ValueError, match=r"image_shape must be \(C, H, W\)"):
        CallableDenoiser(lambda x, s, c: x, image_shape=(4, 4))
    with pytest.raises(ValueError, match="betas must"):
        EpsilonDDPMDenoiser(lambda x, t, c: x, [0.1, 1.5], image_shape=(1, 2, 2))
    bad = CallableDenoiser(lambda x, s, c: x[:, :, :1], image_shape=(1, 2, 2))
    with pytest.raises(ValueError, match="fn returned"):
        bad(torch.zeros(2, 1, 2, 2), 1.0)
