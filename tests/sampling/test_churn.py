"""EDM Algorithm 2 churn: bit-identity with the deterministic sampler, gamma, windows, streams, seeds."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from edmbench.sampling import Churn, NoiseSource, SamplerConfig, churn_step, get_sampler, sample
from edmbench.sampling.discretizations import make_sigmas
from edmbench.sampling.schedules import LINEAR, NONE, VPScaling, VPSchedule

SEEDS = list(range(6))


def algorithm_1(denoiser, latents, sigmas, second_order=True):
    """EDM Algorithm 1 with sigma(t) = t, s(t) = 1, written out plainly (float64, 0-dim sigma tensors)."""
    x = latents.to(torch.float64) * sigmas[0]
    for i in range(len(sigmas) - 1):
        t, t_next = sigmas[i], sigmas[i + 1]
        d = (x - denoiser(x, t).to(torch.float64)) / t
        x_next = x + (t_next - t) * d
        if second_order and i < len(sigmas) - 2:
            d_prime = (x_next - denoiser(x_next, t_next).to(torch.float64)) / t_next
            x_next = x + (t_next - t) * (0.5 * d + 0.5 * d_prime)
        x = x_next
    return x


class RecordingNoise(NoiseSource):
    """A NoiseSource that keeps every per-step draw."""

    def __init__(self, seeds):
        super().__init__(seeds)
        self.draws: list[torch.Tensor] = []

    def randn_like(self, x):
        eps = super().randn_like(x)
        self.draws.append(eps)
        return eps


def run(denoiser, config, seeds=SEEDS, source=NoiseSource):
    ns = source(seeds)
    return sample(denoiser, config, ns.latents(denoiser.image_shape), noise_source=ns), ns


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_zero_churn_and_empty_window_are_bit_identical_to_algorithm_1(gmm32, name):
    latents = NoiseSource(SEEDS).latents(gmm32.image_shape)
    sigmas = make_sigmas("edm", 18, 0.002, 80.0)
    expected = algorithm_1(gmm32, latents, sigmas, second_order=name == "heun")
    plain, _ = run(gmm32, SamplerConfig(sampler=name))
    no_churn, _ = run(gmm32, SamplerConfig(sampler=name, s_churn=0.0, s_tmin=0.05, s_tmax=50, s_noise=1.007))
    empty, ns = run(gmm32, SamplerConfig(sampler=name, s_churn=40.0, s_tmin=100.0, s_tmax=200.0),
                    source=RecordingNoise)
    for result in (plain, no_churn, empty):
        assert torch.equal(result.x, expected)
    assert len(ns.draws) == 18  # an active churn draws on every step, even where gamma = 0


def test_churn_changes_output_and_seeds_reproduce(gmm32):
    config = SamplerConfig(s_churn=40.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003)
    a, _ = run(gmm32, config)
    b, _ = run(gmm32, config)
    deterministic, _ = run(gmm32, SamplerConfig())
    assert torch.equal(a.x, b.x)  # same seeds reproduce
    assert not torch.equal(a.x, deterministic.x)
    other, _ = run(gmm32, config, seeds=[s + 100 for s in SEEDS])
    assert (other.x - a.x).abs().amax(dim=(1, 2, 3)).min() > 0  # different seeds differ, image by image


def test_noise_streams_stay_aligned_across_windows(gmm32):
    draws = []
    for window in [(0.0, math.inf), (0.5, 5.0), (1e3, 2e3)]:
        config = SamplerConfig(s_churn=30.0, s_tmin=window[0], s_tmax=window[1])
        _, ns = run(gmm32, config, source=RecordingNoise)
        draws.append(ns.draws)
    for other in draws[1:]:
        assert len(other) == len(draws[0]) == 18
        assert all(torch.equal(a, b) for a, b in zip(draws[0], other, strict=True))


def test_gamma_values_cap_and_inclusive_window():
    # edm-facts.md §9.6: S_churn 40 / 80 with N = 256 -> gamma 0.15625 / 0.3125; cap sqrt(2) - 1.
    assert Churn(40.0).gamma(1.0, 256) == pytest.approx(0.15625, rel=1e-15)
    assert Churn(80.0).gamma(1.0, 256) == pytest.approx(0.3125, rel=1e-15)
    assert Churn(1000.0).gamma(1.0, 10) == pytest.approx(math.sqrt(2) - 1, rel=1e-15)
    window = Churn(1.0, s_tmin=1.0, s_tmax=2.0)
    assert window.gamma(1.0, 10) == window.gamma(2.0, 10) == 0.1  # inclusive bounds
    assert window.gamma(math.nextafter(2.0, 3.0), 10) == 0 and window.gamma(math.nextafter(1.0, 0.0), 10) == 0


def test_imagenet_window_churns_steps_22_to_212():
    # edm-facts.md §9.7: N = 256, S_min 0.05, S_max 50 -> 191 churned steps, indices 22..212.
    sigmas = make_sigmas("edm", 256, 0.002, 80.0)[:-1]
    churn = Churn(40.0, s_tmin=0.05, s_tmax=50.0)
    churned = [i for i, s in enumerate(sigmas.tolist()) if churn.gamma(s, 256) > 0]
    assert len(churned) == 191 and churned[0] == 22 and churned[-1] == 212


def test_capped_churn_step_doubles_the_variance():
    x = torch.zeros(2, 1, 1, 3, dtype=torch.float64)
    ns = RecordingNoise([0, 1])
    x_hat, t_hat = churn_step(x, 3.0, Churn(1e6, s_noise=1.0), 10, noise_source=ns,
                              round_sigma=lambda s: s)
    # gamma = sqrt(2) - 1: t_hat = sqrt(2) t and the injected std equals t (§1 "The churn cap").
    assert t_hat == pytest.approx(math.sqrt(2) * 3.0, rel=1e-15)
    torch.testing.assert_close(x_hat, 3.0 * ns.draws[0], rtol=1e-14, atol=0)


def test_churn_step_rounds_and_scales_in_the_general_form():
    sched, scaling = VPSchedule(), VPScaling()
    x = torch.ones(1, 1, 1, 2, dtype=torch.float64)
    ns = RecordingNoise([3])

    def round_sigma(s):
        return torch.round(s * 10) / 10

    t = sched.sigma_inv(2.0)
    x_hat, t_hat = churn_step(x, t, Churn(2.0, s_noise=1.01), 10, noise_source=ns, round_sigma=round_sigma,
                              schedule=sched, scaling=scaling)
    # gamma = 0.2: sigma_hat = round(2.4) = 2.4; t_hat = sigma^-1(2.4); s(t) = 1/sqrt(1 + sigma^2).
    assert sched.sigma(t_hat) == pytest.approx(2.4, rel=1e-12)
    s, s_hat = 1 / math.sqrt(5.0), 1 / math.sqrt(1 + 2.4**2)
    want = (s_hat / s) * x + math.sqrt(2.4**2 - 4.0) * s_hat * 1.01 * ns.draws[0]
    torch.testing.assert_close(x_hat, want, rtol=1e-12, atol=1e-14)


def test_inactive_churn_draws_nothing():
    ns = RecordingNoise([0])
    x = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    assert churn_step(x, 1.0, Churn(), 5, noise_source=ns, round_sigma=lambda s: s, schedule=LINEAR,
                      scaling=NONE) == (x, 1.0)
    assert ns.draws == []


@pytest.mark.parametrize("name", ["euler", "heun", "dpm_2"])
def test_every_churn_sampler_uses_the_helper(gmm32, name, monkeypatch):
    import edmbench.sampling.churn as churn_module

    calls = []
    original = churn_module.churn_step

    def spy(*args, **kwargs):
        calls.append(args[1])
        return original(*args, **kwargs)

    module = get_sampler(name).fn.__module__
    monkeypatch.setattr(f"{module}.churn_step", spy)
    run(gmm32, SamplerConfig(sampler=name, num_steps=7, s_churn=5.0))
    assert len(calls) == 7


@pytest.mark.parametrize(("config", "tolerance"), [
    (SamplerConfig(sampler="euler_ancestral", num_steps=128), 0.04),
    (SamplerConfig(sampler="heun", num_steps=64, s_churn=30.0), 0.025),
])
def test_stochastic_samplers_reach_the_data_distribution(config, tolerance):
    """Gaussian data N(0.3, 0.5^2): 300 seeds x 64 values; the std estimate's standard error is ~0.003.

    The tolerance is the discretisation bias (first order for the noise injection; measured 0.022 for
    Euler-ancestral at N = 128 and 0.010 for churned Heun at N = 64) plus 5 standard errors.
    """
    from edmbench.denoisers.analytic import GaussianDenoiser

    den = GaussianDenoiser((1, 8, 8), mean=0.3, std=0.5)
    x, _ = run(den, config, seeds=range(300))
    assert abs(x.x.mean().item() - 0.3) < 5 * 0.5 / math.sqrt(300 * 64)
    assert abs(x.x.std().item() - 0.5) < tolerance


# --- The churn noise stream: EDM1 draws on every step, EDM2 only inside the window (edm-facts.md §1, §8.1).
WINDOW = {"s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 10.0, "s_noise": 1.007}


def edm2_heun(denoiser, latents, sigmas, noise_source, s_churn, s_tmin, s_tmax, s_noise):
    """EDM2's sampler loop (Heun, sigma(t) = t) in float64, written out: churn noise is drawn only when
    s_tmin <= t_cur <= s_tmax; the last step is Euler."""
    num_steps = len(sigmas) - 1
    x = latents.to(torch.float64) * sigmas[0]
    for i in range(num_steps):
        t, t_next = float(sigmas[i]), float(sigmas[i + 1])
        if s_churn > 0 and s_tmin <= t <= s_tmax:
            gamma = min(s_churn / num_steps, math.sqrt(2) - 1)
            t_hat = t + gamma * t
            x = x + math.sqrt(t_hat**2 - t**2) * s_noise * noise_source.randn_like(x)
            t = t_hat
        d = (x - denoiser(x, torch.tensor(t, dtype=torch.float64)).to(torch.float64)) / t
        x_next = x + (t_next - t) * d
        if i < num_steps - 1:
            d_prime = (x_next - denoiser(x_next, torch.tensor(t_next, dtype=torch.float64)).to(torch.float64))
            x_next = x + (t_next - t) * (0.5 * d + 0.5 * d_prime / t_next)
        x = x_next
    return x


def test_in_window_stream_draws_only_inside_the_window(gmm32):
    sigmas = make_sigmas("edm", 18, 0.002, 80.0)
    inside = int(((sigmas[:-1] >= 0.05) & (sigmas[:-1] <= 10.0)).sum())
    assert 0 < inside < 18
    edm1, ns1 = run(gmm32, SamplerConfig(**WINDOW), source=RecordingNoise)
    edm2, ns2 = run(gmm32, SamplerConfig(**WINDOW, churn_noise="in_window"), source=RecordingNoise)
    assert len(ns1.draws) == 18 and len(ns2.draws) == inside
    assert not torch.equal(edm1.x, edm2.x)  # the streams are shifted, so the images differ
    ns = NoiseSource(SEEDS)
    latents = ns.latents(gmm32.image_shape)
    expected = edm2_heun(gmm32, latents, sigmas, ns, **WINDOW)
    torch.testing.assert_close(edm2.x, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["euler", "heun", "dpm_2"])
@pytest.mark.parametrize("window", [{}, {"s_tmin": 0.0, "s_tmax": 1000.0}])
def test_streams_agree_when_every_step_is_in_the_window(gmm32, name, window):
    config = SamplerConfig(sampler=name, num_steps=9, s_churn=10.0, s_noise=1.003, **window)
    edm1, _ = run(gmm32, config)
    edm2, _ = run(gmm32, dataclasses.replace(config, churn_noise="in_window"))
    assert torch.equal(edm1.x, edm2.x)


def test_churn_noise_is_validated_and_read_by_churn_samplers_only():
    with pytest.raises(ValueError, match=r"unknown churn_noise 'edm2'.*every_step, in_window, model"):
        SamplerConfig(churn_noise="edm2")
    with pytest.raises(ValueError, match="churn_noise='in_window' has no effect with sampler 'ipndm'"):
        SamplerConfig(sampler="ipndm", churn_noise="in_window")


def test_edm2_denoisers_default_to_the_edm2_stream():
    from edmbench.denoisers.analytic import GaussianDenoiser
    from edmbench.denoisers.edm2 import EDM2Precond
    from edmbench.denoisers.precond import EDMPrecond
    from edmbench.sampling import with_denoiser_defaults

    assert dict(EDM2Precond.sampler_defaults) == {"churn_noise": "in_window"}
    assert dict(EDMPrecond.sampler_defaults) == {}

    class EDM2Like(GaussianDenoiser):
        sampler_defaults = EDM2Precond.sampler_defaults

    den = EDM2Like((1, 1, 2))
    assert with_denoiser_defaults({"s_churn": 5.0}, den) == {"churn_noise": "in_window", "s_churn": 5.0}
    assert with_denoiser_defaults({"sampler": "ipndm"}, den) == {"sampler": "ipndm"}  # not read: not added
    given = {"churn_noise": "every_step"}
    assert with_denoiser_defaults(given, den) == given  # the spec's value wins
    assert with_denoiser_defaults({}, GaussianDenoiser()) == {}
    config = SamplerConfig.from_dict(with_denoiser_defaults({"s_churn": 5.0}, den))
    assert config.churn.churn_noise == "in_window"


def test_model_stream_is_the_denoisers_release_stream(gmm32):
    """The default ``churn_noise = "model"``: an EDM2-like net samples with EDM2's stream (draws only inside
    the window), any other net with EDM1's; an explicit value always wins."""
    from edmbench.denoisers.edm2 import EDM2Precond

    class EDM2Like:
        sampler_defaults = EDM2Precond.sampler_defaults

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, *args, **kwargs):
            return self.inner(*args, **kwargs)

    assert SamplerConfig().churn_noise == "model"
    edm2_net = EDM2Like(gmm32)
    default, ns_default = run(edm2_net, SamplerConfig(**WINDOW), source=RecordingNoise)
    explicit, _ = run(gmm32, SamplerConfig(**WINDOW, churn_noise="in_window"), source=RecordingNoise)
    assert torch.equal(default.x, explicit.x) and len(ns_default.draws) < 18
    edm1_net, ns_edm1 = run(gmm32, SamplerConfig(**WINDOW), source=RecordingNoise)
    forced, _ = run(edm2_net, SamplerConfig(**WINDOW, churn_noise="every_step"), source=RecordingNoise)
    assert len(ns_edm1.draws) == 18 and torch.equal(edm1_net.x, forced.x)
