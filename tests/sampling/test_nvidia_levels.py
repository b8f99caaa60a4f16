"""Noise levels against NVIDIA EDM generate.py's arithmetic, re-derived here in numpy (edm-facts.md §2).

Each oracle below writes EDM's formulas out again (numpy, in EDM's dtypes and order of operations) instead
of calling edmbench; the implementation must agree to 1e-9 relative.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edmbench.denoisers.iddpm import iddpm_u
from edmbench.sampling import SamplerConfig, sigmas_for, solver_params

M, C_1, C_2 = 1000, 0.001, 0.008  # EDM's iDDPM defaults (edm-facts.md §2)
VP_BETA_D, VP_BETA_MIN = 19.9, 0.1  # EDM generate.py since 62072d2 (edm-facts.md §0)
f32 = np.float32


def torch_sin_f32(x: np.ndarray) -> np.ndarray:
    """The float32 sine EDM calls (torch.sin on a float32 tensor). Float32 sines are not correctly rounded
    and differ by an ulp between libraries (numpy's differs from torch's on 91 of the 1001 arguments here),
    and the table's small end turns one ulp of the ratio into ~1e-3 relative in u, so the oracle takes this
    one primitive from torch; every other operation is numpy."""
    return torch.from_numpy(x).sin().numpy()


def edm_u_table() -> np.ndarray:
    """generate.py's iddpm table: j an int tensor, so (pi/2 * j) / M / (C_2 + 1), the sine, abar, the
    ratio and the clip are float32 (constants rounded to float32); u and its recursion are float64."""
    j = np.arange(M + 1).astype(f32)
    arg = ((f32(0.5 * np.pi) * j) / f32(M)) / f32(C_2 + 1)
    abar = torch_sin_f32(arg) ** 2
    ratio = np.maximum(abar[:-1] / abar[1:], f32(C_1))
    assert arg.dtype == abar.dtype == ratio.dtype == np.float32
    u = np.zeros(M + 1, dtype=np.float64)
    for k in range(M, 0, -1):
        u[k - 1] = np.sqrt((u[k] ** 2 + 1) / np.float64(ratio[k - 1]) - 1)
    return u


@pytest.fixture(scope="module")
def edm_u() -> np.ndarray:
    return edm_u_table()


def edm_iddpm_levels(u: np.ndarray, num_steps: int, sigma_min: float = 0.002, sigma_max: float = 81.0):
    """generate.py: filter the table to the range, then u_f[round((len - 1) / (N - 1) * i)] (half to even)."""
    u_f = u[(u >= sigma_min) & (u <= sigma_max)]
    index = np.round((len(u_f) - 1) / (num_steps - 1) * np.arange(num_steps, dtype=np.float64))
    return u_f[index.astype(np.int64)]


def edm_vp_sigma(beta_d: float, beta_min: float, t):
    """generate.py's vp_sigma: (e^(beta_d t^2 / 2 + beta_min t) - 1)^(1/2)."""
    return (np.e ** (0.5 * beta_d * (t**2) + beta_min * t) - 1) ** 0.5


def edm_vp_levels(num_steps: int, epsilon_s: float):
    """generate.py's vp discretisation, default range: sigma_min = vp_sigma(epsilon_s), refitted betas."""
    sigma_min = edm_vp_sigma(VP_BETA_D, VP_BETA_MIN, epsilon_s)
    sigma_max = edm_vp_sigma(VP_BETA_D, VP_BETA_MIN, 1)
    beta_d = 2 * (np.log(sigma_min**2 + 1) / epsilon_s - np.log(sigma_max**2 + 1)) / (epsilon_s - 1)
    beta_min = np.log(sigma_max**2 + 1) - 0.5 * beta_d
    t = 1 + np.arange(num_steps, dtype=np.float64) / (num_steps - 1) * (epsilon_s - 1)
    return edm_vp_sigma(beta_d, beta_min, t), (beta_d, beta_min)


def test_iddpm_u_table_is_generate_py_arithmetic(edm_u):
    u = iddpm_u()
    assert u.dtype == torch.float64 and u.shape == (M + 1,) and u[M].item() == 0.0
    np.testing.assert_allclose(u.numpy(), edm_u, rtol=1e-9, atol=0)
    # edm-facts.md §2: u_999 = 0.0064224696 (not the all-float64 0.0064254128); every entry differs from the
    # all-float64 table, by up to 4.6e-4 relative.
    assert u[999].item() == pytest.approx(0.0064224696, rel=1e-8)
    j = np.arange(M + 1)
    abar64 = np.sin(0.5 * np.pi * j / M / (C_2 + 1)) ** 2
    u64 = np.zeros(M + 1)
    for k in range(M, 0, -1):
        u64[k - 1] = np.sqrt((u64[k] ** 2 + 1) / max(abar64[k - 1] / abar64[k], C_1) - 1)
    rel = np.abs(edm_u[:M] - u64[:M]) / u64[:M]
    assert (rel > 0).all() and 4.4e-4 < rel.max() < 4.8e-4


def test_iddpm_network_table_is_float32_throughout():
    """EDM's iDDPMPrecond (training/networks.py) runs the same recursion in float32."""
    j = np.arange(M + 1).astype(f32)
    abar = torch_sin_f32(((f32(0.5 * np.pi) * j) / f32(M)) / f32(C_2 + 1)) ** 2
    ratio = np.maximum(abar[:-1] / abar[1:], f32(C_1))
    u = np.zeros(M + 1, dtype=f32)
    for k in range(M, 0, -1):
        u[k - 1] = np.sqrt((u[k] * u[k] + f32(1)) / ratio[k - 1] - f32(1))
    table = iddpm_u(dtype=torch.float32)
    assert table.dtype == torch.float32
    # float32 arithmetic: numpy's and torch's 0-dim float32 ops differ by an ulp on some entries (1e-6 rule).
    np.testing.assert_allclose(table.numpy(), u, rtol=1e-6, atol=0)


@pytest.mark.parametrize("num_steps", range(2, 257))
def test_iddpm_levels_for_every_n(edm_u, num_steps):
    sigmas = sigmas_for(SamplerConfig(discretization="iddpm", num_steps=num_steps))
    assert sigmas[-1].item() == 0.0 and len(sigmas) == num_steps + 1
    np.testing.assert_allclose(sigmas[:-1].numpy(), edm_iddpm_levels(edm_u, num_steps), rtol=1e-9, atol=0)


@pytest.mark.parametrize("epsilon_s", [1e-3, 1e-2, 0.05])
@pytest.mark.parametrize("num_steps", [2, 12, 18, 64, 512])
def test_vp_levels_with_epsilon_s(epsilon_s, num_steps):
    expected, _ = edm_vp_levels(num_steps, epsilon_s)
    sigmas = sigmas_for(SamplerConfig(discretization="vp", epsilon_s=epsilon_s, num_steps=num_steps))
    np.testing.assert_allclose(sigmas[:-1].numpy(), expected, rtol=1e-9, atol=0)


def test_vp_sigma_min_moves_with_epsilon_s():
    """Issue 9's figure: epsilon_s = 0.01 gives EDM's range [0.0447, 152.2]; with sigma_min fixed at the
    epsilon_s = 1e-3 value (0.0105) 11 of the 12 levels would differ, by up to 77 %."""
    expected, _ = edm_vp_levels(12, 0.01)
    assert expected[-1] == pytest.approx(0.0447, abs=5e-5) and expected[0] == pytest.approx(152.2, abs=0.05)
    lo_fixed, hi = edm_vp_sigma(VP_BETA_D, VP_BETA_MIN, 1e-3), edm_vp_sigma(VP_BETA_D, VP_BETA_MIN, 1)
    beta_d = 2 * (np.log(lo_fixed**2 + 1) / 0.01 - np.log(hi**2 + 1)) / (0.01 - 1)
    beta_min = np.log(hi**2 + 1) - 0.5 * beta_d
    old = edm_vp_sigma(beta_d, beta_min, 1 + np.arange(12) / 11 * (0.01 - 1))
    rel = np.abs(old - expected) / expected
    assert (rel > 1e-9).sum() == 11 and 0.76 < rel.max() < 0.78
    sigmas = sigmas_for(SamplerConfig(discretization="vp", epsilon_s=0.01, num_steps=12))
    np.testing.assert_allclose(sigmas[:-1].numpy(), expected, rtol=1e-9, atol=0)


# Paper Fig. 2 "original" deterministic samplers (edm-facts.md §2 Fig. 2a table and §7.5): Euler with the
# original time steps, sigma(t) and s(t) of each model family.
def test_fig2_vp_original_sampler():
    config = SamplerConfig(sampler="euler", num_steps=512, discretization="vp", schedule="vp", scaling="vp")
    expected, (beta_d, beta_min) = edm_vp_levels(512, 1e-3)
    sigmas = sigmas_for(config)
    np.testing.assert_allclose(sigmas[:-1].numpy(), expected, rtol=1e-9, atol=0)
    schedule = solver_params(config)["schedule"]  # the vp sigma(t) through the same refitted betas
    t_edm = ((beta_min**2 + 2 * beta_d * np.log(expected**2 + 1)) ** 0.5 - beta_min) / beta_d
    t_ours = np.array([schedule.sigma_inv(s) for s in sigmas[:-1].tolist()])
    np.testing.assert_allclose(t_ours, t_edm, rtol=1e-9, atol=0)
    assert config.nfe == 512


def test_fig2_ve_original_sampler():
    config = SamplerConfig(sampler="euler", num_steps=8192, discretization="ve", schedule="ve")
    sigma_min, sigma_max, n = 0.02, 100.0, 8192
    orig_t = sigma_max**2 * ((sigma_min**2 / sigma_max**2) ** (np.arange(n, dtype=np.float64) / (n - 1)))
    sigmas = sigmas_for(config)
    np.testing.assert_allclose(sigmas[:-1].numpy(), np.sqrt(orig_t), rtol=1e-9, atol=0)
    schedule = solver_params(config)["schedule"]
    np.testing.assert_allclose([schedule.sigma_inv(s) for s in sigmas[:-1].tolist()], orig_t, rtol=1e-9)


def test_fig2_iddpm_original_sampler(edm_u):
    """iDDPM + DDIM: Euler on sigma(t) = t over the table's levels (250 steps for ADM ImageNet-64)."""
    config = SamplerConfig(sampler="euler", num_steps=250, discretization="iddpm")
    expected = edm_iddpm_levels(edm_u, 250)
    np.testing.assert_allclose(sigmas_for(config)[:-1].numpy(), expected, rtol=1e-9, atol=0)
