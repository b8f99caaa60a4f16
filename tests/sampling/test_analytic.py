"""Analytic denoisers against an independent oracle: Tweedie's formula D = x + sigma^2 grad log p_sigma(x)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from edmbench.denoisers.analytic import GaussianDenoiser, GaussianMixtureDenoiser
from edmbench.denoisers.base import Denoiser

from .conftest import make_gmm


def tweedie(weights, means, covs, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """x + sigma^2 grad log sum_k w_k N(x; mu_k, S_k + sigma^2 I), by autograd (float64)."""
    x = x.detach().clone().requires_grad_(True)
    eye = torch.eye(means.shape[1], dtype=torch.float64)
    logp = torch.stack([MultivariateNormal(m, c + sigma**2 * eye).log_prob(x)
                        for m, c in zip(means, covs, strict=True)], 1)
    total = torch.logsumexp(logp + torch.log(weights / weights.sum()), dim=1).sum()
    (grad,) = torch.autograd.grad(total, x)
    return (x + sigma**2 * grad).detach()


@pytest.mark.parametrize("sigma", [0.01, 0.3, 1.0, 7.0, 80.0])
def test_mixture_matches_tweedie(gmm64, sigma):
    x = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * (1 + sigma)
    got = gmm64(x.reshape(32, 1, 1, 2), sigma).reshape(32, 2)
    want = tweedie(gmm64.weights, gmm64.means, gmm64.covs, x, sigma)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)  # float64 closed form (design.md)


def test_gaussian_matches_single_component_mixture_and_tweedie():
    gauss = GaussianDenoiser((1, 2, 2), mean=0.3, std=0.5, out_dtype=torch.float64)
    mean = torch.full((1, 4), 0.3, dtype=torch.float64)
    cov = 0.25 * torch.eye(4, dtype=torch.float64)[None]
    mix = GaussianMixtureDenoiser([1.0], mean, cov, image_shape=(1, 2, 2), out_dtype=torch.float64)
    x = torch.randn(8, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 3
    for sigma in [0.002, 0.5, 80.0]:
        want = tweedie(torch.ones(1), mean, cov, x.reshape(8, 4), sigma).reshape(x.shape)
        torch.testing.assert_close(gauss(x, sigma), want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(mix(x, sigma), want, rtol=1e-10, atol=1e-12)


def test_contract(gmm32):
    for den in (gmm32, GaussianDenoiser()):
        assert isinstance(den, Denoiser)
        assert den.sigma_min == 0 and den.sigma_max == float("inf")
        x = torch.randn(3, *den.image_shape)
        before = x.clone()
        out = den(x, torch.tensor(0.5))
        assert out.dtype == torch.float32 and out.shape == x.shape
        assert torch.equal(x, before)  # never modifies x
        assert den.round_sigma(torch.tensor([0.3, 2.0])).tolist() == pytest.approx([0.3, 2.0])


def test_per_sample_sigma_and_limits(gmm64):
    x = torch.randn(4, 1, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    sigmas = torch.tensor([0.1, 1.0, 5.0, 50.0], dtype=torch.float64)
    batched = gmm64(x, sigmas)
    for i in range(4):
        torch.testing.assert_close(batched[i:i + 1], gmm64(x[i:i + 1], sigmas[i].item()), rtol=0, atol=1e-15)
    torch.testing.assert_close(gmm64(x, 1e-9), x, rtol=0, atol=1e-12)  # sigma -> 0: D(x) -> x
    mean = (gmm64.weights[:, None] * gmm64.means).sum(0).reshape(1, 1, 1, 2).expand_as(x)
    torch.testing.assert_close(gmm64(x, 1e7), mean, rtol=0, atol=1e-10)  # sigma -> inf: the data mean


def test_batch_invariance_is_bitwise(gmm32):
    x = torch.randn(8, 1, 1, 2, generator=torch.Generator().manual_seed(4)) * 3
    whole = gmm32(x, 0.7)
    assert torch.equal(whole, torch.cat([gmm32(x[i:i + 1], 0.7) for i in range(8)]))
    assert torch.equal(whole, torch.cat([gmm32(x[:4], 0.7), gmm32(x[4:], 0.7)]))


def test_class_conditional_mixture():
    cond = make_gmm(classes=True)  # components 0 -> class 0; 1, 2 -> class 1
    assert cond.label_dim == 2
    x = torch.randn(5, 1, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    labels = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0, 1]), 2).float()
    got = cond(x, 0.8, labels).reshape(5, 2)
    for i, k in enumerate([0, 1, 1, 0, 1]):
        comps = [0] if k == 0 else [1, 2]
        want = tweedie(cond.weights[comps], cond.means[comps], cond.covs[comps], x[i].reshape(1, 2), 0.8)
        torch.testing.assert_close(got[i:i + 1], want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(cond(x, 0.8), make_gmm()(x, 0.8))  # no labels: the full mixture
    with pytest.raises(ValueError, match="class_labels must have shape"):
        cond(x, 0.8, labels[:, :1])


def test_npz_round_trip(tmp_path):
    gmm = make_gmm(torch.float32, classes=True)
    gmm.save_npz(tmp_path / "g.npz")
    back = GaussianMixtureDenoiser.from_npz(tmp_path / "g.npz")
    assert back.image_shape == gmm.image_shape and back.label_dim == 2
    x = torch.randn(4, 1, 1, 2)
    assert torch.equal(back(x, 0.5), gmm(x, 0.5))


def _write(path, **arrays):
    base = {"weights": np.array([0.5, 0.5]), "means": np.zeros((2, 2)), "covs": np.stack([np.eye(2)] * 2),
            "image_shape": np.array([1, 1, 2])}
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


@pytest.mark.parametrize(("arrays", "message"), [
    ({"covs": None}, "needs keys"),
    ({"extra": np.zeros(1)}, "needs keys"),
    ({"means": np.full((2, 2), np.nan)}, "NaN"),
    ({"means": np.zeros((3, 2))}, "means must have shape"),
    ({"covs": np.stack([np.eye(2), -np.eye(2)])}, "positive definite"),
    ({"covs": np.stack([np.eye(2), [[1.0, 0.5], [0.0, 1.0]]])}, "symmetric"),
    ({"weights": np.array([1.0, -0.1])}, "positive"),
    ({"image_shape": np.array([1, 2, 2])}, "image_shape"),
    ({"component_classes": np.array([0, 2])}, "without a component"),
    ({"means": np.zeros((2, 2), dtype=np.int64)}, "float array"),
])
def test_npz_validation(tmp_path, arrays, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixtureDenoiser.from_npz(_write(tmp_path / "bad.npz", **arrays))


def test_sample_data_moments():
    gmm = make_gmm()
    x0 = gmm.sample_data(20000, torch.Generator().manual_seed(6)).reshape(-1, 2)
    mean = (gmm.weights[:, None] * gmm.means).sum(0)
    # n = 20000; per-coordinate std of the data <= 1.5, so 5 sigma of the mean is < 0.06.
    torch.testing.assert_close(x0.mean(0), mean, rtol=0, atol=0.06)
