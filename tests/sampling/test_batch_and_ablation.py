"""Per-image seeding (batch invariance) and the general sigma(t)/s(t) ablation form (EDM Table 1, Fig. 2a)."""

from __future__ import annotations

import pytest
import torch

from edmbench.sampling import NoiseSource, SamplerConfig, sample, sampler_names, sigmas_for

from .conftest import make_gmm

STOCHASTIC = {"s_churn": 20.0, "s_tmin": 0.01, "s_tmax": 30.0, "s_noise": 1.003}


def config_for(name: str) -> SamplerConfig:
    """Each sampler with its noise switched on where it has some (churn or ancestral)."""
    from edmbench.sampling import get_sampler

    extra = STOCHASTIC if get_sampler(name).churn else {}
    return SamplerConfig(sampler=name, num_steps=8, **extra)


def generate(denoiser, config, seeds):
    """Latents, then class labels, then per-step noise: the per-seed draw order (edm-facts.md §3)."""
    ns = NoiseSource(seeds)
    latents = ns.latents(denoiser.image_shape)
    labels = ns.class_labels(denoiser.label_dim)
    return sample(denoiser, config, latents, noise_source=ns, class_labels=labels).x


@pytest.mark.parametrize("name", sampler_names())
def test_batch_invariance(name):
    den = make_gmm(torch.float32, classes=True)
    config = config_for(name)
    seeds = list(range(8))
    whole = generate(den, config, seeds)
    halves = torch.cat([generate(den, config, seeds[:4]), generate(den, config, seeds[4:])])
    singles = torch.cat([generate(den, config, [s]) for s in seeds])
    assert torch.equal(whole, halves) and torch.equal(whole, singles)


def test_image_depends_only_on_its_seed(gmm32):
    config = config_for("heun")
    a = generate(gmm32, config, [5, 6, 7])
    b = generate(gmm32, config, [9, 6, 2**32 + 7])  # seed mod 2**32: 2**32 + 7 acts as 7
    assert torch.equal(a[1:], b[1:]) and not torch.equal(a[0], b[0])


@pytest.mark.parametrize(("schedule", "scaling"),
                         [("vp", "vp"), ("ve", "none"), ("vp", "none"), ("linear", "vp")])
def test_every_schedule_and_scaling_solves_the_same_ode(gmm64, schedule, scaling):
    """sigma(t) and s(t) change the ODE's coordinates, not its solution at sigma = 0 (EDM Sec. 3)."""
    seeds = list(range(6))
    edm = generate(gmm64, SamplerConfig(num_steps=256), seeds)
    other = generate(gmm64, SamplerConfig(num_steps=256, schedule=schedule, scaling=scaling), seeds)
    # Both are Heun at N = 256 in different coordinates; measured max differences: vp/vp 2.7e-4,
    # ve/none 2.1e-3 (sigma = sqrt(t) makes the small-sigma steps harder, EDM Sec. 3).
    torch.testing.assert_close(other, edm, rtol=0, atol=5e-3)
    assert not torch.equal(other, edm)


def test_fig_2a_settings_run_with_their_nfe(gmm64):
    # edm-facts.md §2 "Paper Fig. 2a settings": (N, solver, disc, schedule, scaling) -> NFE.
    settings = [(512, "euler", "vp", "vp", "vp", 512), (128, "heun", "edm", "vp", "vp", 255),
                (18, "heun", "edm", "linear", "none", 35)]
    outputs = []
    for num_steps, solver, disc, schedule, scaling, nfe in settings:
        config = SamplerConfig(sampler=solver, num_steps=num_steps, discretization=disc, schedule=schedule,
                               scaling=scaling)
        ns = NoiseSource(range(4))
        result = sample(gmm64, config, ns.latents(gmm64.image_shape), noise_source=ns)
        assert result.nfe == nfe and torch.isfinite(result.x).all()
        outputs.append(result.x)
    # All three approximate the same flow; Euler at N = 512 is within ~1e-2 of the 128-step Heun.
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=5e-2)


def test_vp_discretization_defaults_and_clamping():
    # The vp discretisation's default range [sigma_VP(1e-3), sigma_VP(1)] = [0.0104859928, 152.166970284].
    sigmas = sigmas_for(SamplerConfig(sampler="euler", discretization="vp", num_steps=18))
    assert sigmas[0].item() == pytest.approx(152.166970284, rel=1e-10)
    assert sigmas[-2].item() == pytest.approx(0.0104859928, rel=1e-8)

    class VE:
        sigma_min, sigma_max, image_shape, label_dim = 0.02, 100.0, (1, 1, 2), 0

        def round_sigma(self, s):
            return s

    # edm-facts.md §1 step 1: a VE net clamps EDM's sigma_min 0.002 up to 0.02.
    assert sigmas_for(SamplerConfig(), VE())[-2].item() == pytest.approx(0.02, rel=1e-12)


def test_alpha_half_is_the_midpoint_method(gmm64):
    """alpha = 1/2: x_next = x + h d(x + h/2 d, t + h/2), checked by hand for one step."""
    ns = NoiseSource([0, 1])
    latents = ns.latents(gmm64.image_shape)
    config = SamplerConfig(num_steps=2, alpha=0.5, sigma_min=1.0, sigma_max=3.0)
    got = sample(gmm64, config, latents, noise_source=ns)
    x = latents.to(torch.float64) * 3.0
    d = (x - gmm64(x, 3.0)) / 3.0
    x_mid = x + (-1.0) * d
    x1 = x + (-2.0) * ((x_mid - gmm64(x_mid, 2.0)) / 2.0)
    x2 = x1 - (x1 - gmm64(x1, 1.0))  # last step to 0: Euler
    torch.testing.assert_close(got.x, x2, rtol=1e-13, atol=1e-13)
