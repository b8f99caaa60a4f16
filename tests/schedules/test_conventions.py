"""End-point conventions and AFS: counted network calls equal the formula; AFS saves exactly one."""

from __future__ import annotations

import pytest
import torch

from edmbench.sampling.conventions import ENDPOINTS, Convention, sample_levels
from edmbench.sampling.noise import NoiseSource
from edmbench.sampling.registry import get_sampler, sampler_names
from edmbench.sampling.spacings import polynomial_levels

# Heun by hand: EDM's zero end point is 2N - 1 (last step Euler); N full steps 2N; + final denoise 2N + 1.
HEUN = {"zero": lambda n: 2 * n - 1, "sigma_min": lambda n: 2 * n, "sigma_min_denoise": lambda n: 2 * n + 1}


def _run(gmm, sampler, num_steps, convention):
    seeds = range(4)
    noise = NoiseSource(seeds).latents(gmm.image_shape)
    levels = polynomial_levels(convention.num_levels(num_steps), 0.002, 80.0, 7.0)
    return sample_levels(gmm, sampler, levels, noise, noise_source=NoiseSource(seeds), convention=convention)


@pytest.mark.parametrize("sampler", sampler_names())
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_counted_nfe_equals_formula_and_afs_saves_one(gmm, sampler, endpoint):
    info = get_sampler(sampler)
    for num_steps in (1, 2, 5):
        plain = _run(gmm, sampler, num_steps, Convention(endpoint, afs=False))
        afs = _run(gmm, sampler, num_steps, Convention(endpoint, afs=True))
        assert plain.nfe == Convention(endpoint).nfe(info, num_steps)  # counted (sample_levels also checks)
        assert afs.nfe == plain.nfe - 1
        assert plain.network_rounds == plain.nfe and afs.network_rounds == afs.nfe
        ends_at_zero = endpoint == "zero"
        assert (plain.sigmas[-1].item() == 0) == ends_at_zero
        assert len(plain.sigmas) == num_steps + 1


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_heun_formula_by_hand(gmm, endpoint):
    for n in (1, 3, 8):
        assert _run(gmm, "heun", n, Convention(endpoint)).nfe == HEUN[endpoint](n)


def test_afs_first_call_is_the_gaussian_denoiser(gmm):
    """With AFS one Euler step from sigma_max uses D = sigma_data^2/(sigma^2 + sigma_data^2) x exactly."""
    noise = NoiseSource(range(3)).latents(gmm.image_shape).to(torch.float64)
    levels = torch.tensor([80.0, 10.0], dtype=torch.float64)
    out = sample_levels(gmm, "euler", levels, noise, noise_source=None,
                        convention=Convention("sigma_min", True))
    x0, gain = noise * 80.0, 0.5**2 / (80.0**2 + 0.5**2)  # sigma_data = 0.5 (no sigma_data on the mixture)
    expected = x0 + (10.0 - 80.0) * (x0 - gain * x0) / 80.0
    assert out.nfe == 0
    torch.testing.assert_close(out.x, expected, rtol=1e-6, atol=1e-6)  # D is returned in float32


def test_sigma_min_output_is_noisy_and_denoise_removes_it(gmm):
    a = _run(gmm, "euler", 6, Convention("sigma_min"))
    b = _run(gmm, "euler", 6, Convention("sigma_min_denoise"))
    assert a.sigmas[-1].item() == pytest.approx(0.002) and not torch.equal(a.x, b.x)


def test_bad_convention():
    with pytest.raises(ValueError, match="unknown endpoint 'zeros'; did you mean 'zero'"):
        Convention("zeros")
    with pytest.raises(ValueError, match="afs must be true or false"):
        Convention("zero", afs="yes")
