"""The new discretizations and conventions through SamplerConfig and ``sample`` (the study's path)."""

from __future__ import annotations

import pytest
import torch

from edmbench.sampling import NoiseSource, SamplerConfig, sample, sigmas_for
from edmbench.sampling.conventions import ENDPOINTS
from edmbench.sampling.knots import knot_params
from edmbench.sampling.spacings import logsnr_levels, polynomial_levels, time_uniform_levels

GITS_6 = [80, 10.9836, 3.8811, 1.584, 0.5666, 0.1698, 0.002]  # ecosystem-facts §6 (GITS, CIFAR-10, 6 steps)


def _config(**kw) -> SamplerConfig:
    return SamplerConfig.from_dict(kw)


@pytest.mark.parametrize(("name", "fn"), [("logsnr", logsnr_levels), ("time_uniform", time_uniform_levels),
                                          ("polynomial", polynomial_levels)])
def test_registered_discretizations_give_their_levels(name, fn):
    sigmas = sigmas_for(_config(num_steps=7, discretization=name))
    torch.testing.assert_close(sigmas[:-1], fn(7, 0.002, 80.0), rtol=1e-12, atol=0)
    assert sigmas[-1].item() == 0


def test_polynomial_rho7_is_edm_and_default_is_unchanged():
    edm = sigmas_for(_config(num_steps=9))
    torch.testing.assert_close(sigmas_for(_config(num_steps=9, discretization="polynomial")), edm,
                               rtol=1e-12, atol=0)
    assert sigmas_for(_config(num_steps=9, endpoint="zero", afs=False)).equal(edm)


def test_pasted_published_schedule_under_its_convention():
    config = _config(sampler="ipndm", num_steps=6, discretization="knots", sigmas=GITS_6,
                     endpoint="sigma_min")
    assert sigmas_for(config).tolist() == [float(s) for s in GITS_6]
    assert config.nfe == 6 and config.network_rounds == 6  # the paper's NFE 6 (sigma_min, no AFS)
    zero = _config(sampler="ipndm", num_steps=7, discretization="knots", sigmas=[*GITS_6, 0])
    assert sigmas_for(zero).tolist() == [*map(float, GITS_6), 0.0] and zero.nfe == 7


def test_searched_knots_enqueue_rho7():
    rho7 = polynomial_levels(8, 0.002, 80.0, 7.0)
    config = _config(num_steps=8, discretization="knots", **knot_params(rho7))
    torch.testing.assert_close(sigmas_for(config)[:-1], rho7, rtol=1e-12, atol=0)


@pytest.mark.parametrize(("kw", "message"), [
    ({"num_steps": 5, "discretization": "knots", "knot_1": 0.5}, "missing: \\['knot_2', 'knot_3'\\]"),
    ({"num_steps": 3, "discretization": "knots", "knot_1": 0.5, "knot_2": 0.5}, "not used: \\['knot_2'\\]"),
    ({"num_steps": 3, "discretization": "knots", "sigmas": [80, 1, 0.002, 0.001]}, "has 4 non-zero levels"),
    ({"num_steps": 3, "discretization": "knots", "sigmas": [80, 1, 0.002], "knot_1": 0.2}, "not both"),
])
def test_bad_knots_configs_refused_at_construction(kw, message):
    with pytest.raises(ValueError, match=message) as err:
        _config(**kw)  # SamplerConfig itself refuses: no denoiser or sigma build needed
    assert str(err.value).count("\n") == 0  # one line


def test_knots_sigmas_outside_the_denoisers_range_refused_at_sigma_build():
    config = _config(num_steps=3, discretization="knots", sigmas=[80, 1, 0.002], sigma_min=0.01)
    with pytest.raises(ValueError, match="below sigma_min"):
        sigmas_for(config)


@pytest.mark.parametrize(("kw", "message"), [
    ({"discretization": "knots", "sigmas": [80, 80, 1]}, "strictly decreasing"),
    ({"knot_1": 0.3}, "has no effect .* read by discretization 'knots'"),
    ({"discretization": "knots", "knot_1": 1.5}, "a knot fraction must be a number in \\[0, 1\\]"),
    ({"endpoint": "sigma0"}, "unknown endpoint"),
])
def test_bad_config_values_refused_at_construction(kw, message):
    with pytest.raises(ValueError, match=message):
        _config(**kw)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("sampler", ["euler", "heun", "ipndm", "unipc"])
def test_sample_counts_the_convention(gmm, endpoint, sampler):
    seeds = range(3)
    for afs in (False, True):
        config = _config(sampler=sampler, num_steps=5, discretization="logsnr", endpoint=endpoint, afs=afs)
        noise = NoiseSource(seeds).latents(gmm.image_shape)
        result = sample(gmm, config, noise, noise_source=NoiseSource(seeds))
        assert result.nfe == config.nfe  # sample() also raises if the count and the formula disagree
    assert _config(sampler=sampler, num_steps=5, endpoint=endpoint, afs=True).nfe == \
        _config(sampler=sampler, num_steps=5, endpoint=endpoint).nfe - 1


def test_trial_record_carries_the_convention_beside_nfe():
    from edmbench.study.record import TrialRecord

    class FakeTrial:
        def __init__(self):
            self.user_attrs, self.system_attrs = {}, {}

        def set_user_attr(self, key, value):
            self.user_attrs[key] = value

    config = _config(sampler="heun", num_steps=5, endpoint="sigma_min", afs=True)
    trial = FakeTrial()
    TrialRecord(nfe=config.nfe, endpoint=config.endpoint, afs=config.afs,
                network_rounds=config.network_rounds).write(trial)
    record = TrialRecord.read(trial)
    assert (record.nfe, record.endpoint, record.afs, record.network_rounds) == (9, "sigma_min", True, 9)
