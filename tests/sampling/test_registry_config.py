"""Registry metadata, SamplerConfig validation, counted NFE against the registry formula."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from edmbench.denoisers.analytic import GaussianDenoiser
from edmbench.denoisers.base import CountingDenoiser
from edmbench.sampling import NoiseSource, SamplerConfig, get_sampler, sample, sampler_names, sigmas_for


def test_registry_entries():
    names = sampler_names()
    expected = {"euler", "heun", "dpm_2", "dpmpp_2m", "ipndm", "ipndm_v", "unipc", "euler_ancestral"}
    assert expected <= set(names)
    for name in names:
        info = get_sampler(name)
        assert info.name == name and callable(info.fn) and info.order >= 1
        assert isinstance(info.stochastic, bool) and isinstance(info.churn, bool)
        valid = {f.name for f in dataclasses.fields(SamplerConfig)}
        assert set(info.params) <= valid  # every solver knob is a config field


def test_unknown_sampler_lists_names_and_close_match():
    with pytest.raises(ValueError, match=r"sampler 'huen'; did you mean 'heun'\?.*euler, euler_ancestral"):
        get_sampler("huen")
    with pytest.raises(ValueError, match="did you mean 'dpmpp_2m'"):
        SamplerConfig(sampler="dpmpp2m")


@pytest.mark.parametrize("name", sampler_names())
@pytest.mark.parametrize("num_steps", [1, 2, 5, 18])
def test_counted_nfe_matches_registry(name, num_steps):
    den = GaussianDenoiser((1, 2, 2))
    config = SamplerConfig(sampler=name, num_steps=num_steps)
    ns = NoiseSource(range(3))
    # sample() counts through CountingDenoiser and raises on a mismatch; count independently here too.
    counter = CountingDenoiser(den)
    result = sample(counter, config, ns.latents(den.image_shape), noise_source=ns)
    assert result.nfe == counter.calls == config.nfe == get_sampler(name).nfe(num_steps)
    assert counter.sample_evaluations == 3 * config.nfe
    assert result.x.dtype == torch.float64 and result.sigmas.shape == (num_steps + 1,)


def test_heun_nfe_is_2n_minus_1_and_churn_does_not_change_it():
    # edm-facts.md §1.1 / §9.5: Heun 2N-1 (18 -> 35, 40 -> 79), Euler N; churn never changes the NFE.
    assert SamplerConfig(num_steps=18).nfe == 35
    assert SamplerConfig(num_steps=40).nfe == 79
    assert SamplerConfig(sampler="euler", num_steps=18).nfe == 18
    den = GaussianDenoiser((1, 2, 2))
    ns = NoiseSource(range(2))
    churned = SamplerConfig(num_steps=18, s_churn=40, s_tmin=0.05, s_tmax=50, s_noise=1.003)
    assert sample(den, churned, ns.latents(den.image_shape), noise_source=ns).nfe == 35


def test_sample_refuses_a_solver_that_miscounts(monkeypatch):
    from edmbench.sampling import SAMPLERS

    info = get_sampler("euler")
    den = GaussianDenoiser((1, 2, 2))
    ns = NoiseSource([0])
    with (SAMPLERS.override("euler", dataclasses.replace(info, nfe=lambda n: n + 1)),
          pytest.raises(RuntimeError, match="made 3 denoiser calls")):
        sample(den, SamplerConfig(sampler="euler", num_steps=3), ns.latents(den.image_shape), noise_source=ns)
    assert get_sampler("euler") is info


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"s_tmin": 2.0, "s_tmax": 1.0}, r"s_tmin \(2.0\) must be <= s_tmax \(1.0\)"),
    ({"s_churn": -1.0}, "s_churn must be a finite number >= 0"),
    ({"s_noise": 0.0}, "s_noise must be a finite number > 0"),
    ({"s_noise": -1.0}, "s_noise must be a finite number > 0"),
    ({"num_steps": 0}, "num_steps must be an integer >= 1"),
    ({"num_steps": 2.5}, "num_steps must be an integer >= 1"),
    ({"rho": 0.0}, "rho must be a finite number > 0"),
    ({"rho": -7.0}, "rho must be a finite number > 0"),
    ({"sigma_min": 0.0}, "sigma_min must be None or a finite number > 0"),
    ({"sigma_min": 5.0, "sigma_max": 1.0}, "sigma_min .* must be <= sigma_max"),
    ({"discretization": "karras"}, "unknown discretization 'karras'.*edm, iddpm, .*ve, vp"),
    ({"schedule": "liner"}, "did you mean 'linear'"),
    ({"scaling": "vpp"}, "did you mean 'vp'"),
    ({"alpha": 0.0}, r"alpha must be in \(0, 1\]"),
    ({"alpha": 1.5}, r"alpha must be in \(0, 1\]"),
    ({"sampler": "ipndm", "order": 5}, r"order for sampler 'ipndm' must be None or one of \[1, 2, 3, 4\]"),
    ({"sampler": "unipc", "order": 4}, r"order for sampler 'unipc' must be None or one of \[1, 2, 3\]"),
    ({"sampler": "ipndm", "order": 2.0}, "must be None or one of"),
    ({"sampler": "euler_ancestral", "eta": 2.0}, r"eta must be in \[0, 1\]"),
    ({"epsilon_s": 0.0}, r"epsilon_s must be in \(0, 1\)"),
    ({"rho": "7"}, "rho must be a number"),
])
def test_bad_parameters_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**kwargs)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"sampler": "dpmpp_2m", "alpha": 0.5}, "alpha"),
    ({"sampler": "euler", "alpha": 0.5}, "alpha"),
    ({"sampler": "ipndm", "s_churn": 10.0}, "s_churn"),
    ({"sampler": "dpmpp_2m", "schedule": "vp"}, "schedule"),
    ({"sampler": "heun", "order": 3}, "order"),
    ({"sampler": "heun", "eta": 0.5}, "eta"),
    ({"discretization": "vp", "rho": 5.0}, "rho"),
    ({"epsilon_s": 1e-5}, "epsilon_s"),
])
def test_knobs_the_sampler_ignores_are_refused(kwargs, field):
    with pytest.raises(ValueError, match=f"{field}=.* has no effect with sampler"):
        SamplerConfig(**kwargs)


def test_valid_combinations():
    SamplerConfig(sampler="heun", alpha=0.5, schedule="vp", scaling="vp", discretization="vp", epsilon_s=1e-4)
    SamplerConfig(sampler="dpm_2", s_churn=5.0, s_tmin=0.1, s_tmax=10.0, s_noise=1.007)
    SamplerConfig(sampler="ipndm", order=3)
    SamplerConfig(sampler="euler_ancestral", eta=0.5)
    SamplerConfig(sampler="heun", s_tmin=0.05, s_tmax=50.0)  # a window with s_churn = 0 is harmless


def test_from_dict_to_dict_round_trip():
    config = SamplerConfig.from_dict({"sampler": "euler", "num_steps": 10, "s_churn": 5, "rho": 5})
    assert config.s_churn == 5.0 and isinstance(config.s_churn, float) and isinstance(config.rho, float)
    assert SamplerConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["s_tmax"] == math.inf
    with pytest.raises(ValueError, match=r"unknown SamplerConfig key 's_chrun'; did you mean 's_churn'\?"):
        SamplerConfig.from_dict({"s_chrun": 1.0})
    with pytest.raises(ValueError, match="Valid keys: sampler, num_steps, sigma_min"):
        SamplerConfig.from_dict({"steps": 1})


def test_config_is_frozen_and_fields_are_the_knobs():
    config = SamplerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_steps = 3  # type: ignore[misc]
    names = [f.name for f in dataclasses.fields(SamplerConfig)]
    for knob in ["sampler", "num_steps", "sigma_min", "sigma_max", "rho", "discretization", "schedule",
                 "scaling", "s_churn", "s_tmin", "s_tmax", "s_noise", "alpha", "order", "eta"]:
        assert knob in names
    assert sigmas_for(config)[0].item() == 80.0  # defaults: EDM's [0.002, 80]


def test_sample_validates_inputs():
    den = GaussianDenoiser((1, 2, 2))
    ns = NoiseSource(range(2))
    with pytest.raises(ValueError, match=r"expected \[B, 1, 2, 2\]"):
        sample(den, SamplerConfig(), torch.zeros(2, 1, 3, 3), noise_source=ns)
    with pytest.raises(ValueError, match="noise has 3 samples but noise_source has 2 seeds"):
        sample(den, SamplerConfig(), torch.zeros(3, 1, 2, 2), noise_source=ns)


@pytest.mark.parametrize("name", sampler_names())
def test_callback_once_per_step(name):
    den = GaussianDenoiser((1, 2, 2))
    ns = NoiseSource(range(2))
    seen = []
    config = SamplerConfig(sampler=name, num_steps=5)
    result = sample(den, config, ns.latents(den.image_shape), noise_source=ns, callback=seen.append)
    assert [s["i"] for s in seen] == list(range(5))
    assert seen[0]["sigma"] == 80.0 and set(seen[0]) == {"i", "x", "sigma", "sigma_hat", "denoised"}
    assert torch.equal(seen[-1]["x"], result.x)
