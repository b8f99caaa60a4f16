"""The generic registry and the knob metadata: which knobs a configuration reads, from registry entries."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from edmbench.denoisers.analytic import GaussianDenoiser
from edmbench.registry import Registry, check_name, close_match, unknown_name_message
from edmbench.sampling import (
    DISCRETIZATIONS,
    KNOBS,
    PARENT_KNOBS,
    SAMPLERS,
    SCALINGS,
    SCHEDULES,
    Knob,
    NoiseSource,
    SamplerConfig,
    SamplerInfo,
    ignored_knobs,
    knobs_read,
    sample,
    sigmas_for,
)
from edmbench.sampling.discretizations import DiscretizationInfo, edm_levels
from edmbench.sampling.knobs import ALWAYS_READ, PARENTS, registered
from edmbench.sampling.ode import ode_derivative, start

# --- Registry


def test_registry_get_names_and_errors():
    reg: Registry[int] = Registry("colour", [("red", 1), ("green", 2), ("blue", 3)])
    assert reg.get("green") == 2 and reg.names() == ("blue", "green", "red")
    assert list(reg) == list(reg.names())
    assert "red" in reg and "pink" not in reg and 3 not in reg and len(reg) == 3
    message = r"^unknown colour 'gren'; did you mean 'green'\? Valid colour names: blue, green, red$"
    with pytest.raises(ValueError, match=message):
        reg.get("gren")
    with pytest.raises(ValueError, match=r"unknown colour \['red'\]; did you mean 'red'"):  # unhashable
        reg.get(["red"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="colour 'red' is already registered"):
        reg.register("red", 9)
    assert reg.unregister("blue") == 3 and reg.names() == ("green", "red")


def test_registry_override_restores_what_was_there():
    reg: Registry[int] = Registry("colour", [("red", 1)])
    with reg.override("red", 10), reg.override("pink", 5):
        assert (reg.get("red"), reg.get("pink")) == (10, 5)
    assert reg.items() == [("red", 1)]


def test_one_did_you_mean_helper():
    assert close_match("huen", ["heun", "euler"]) == "heun" and close_match("zzz", ["heun"]) is None
    assert unknown_name_message("sampler", "x", ["b", "a"]) == "unknown sampler 'x' Valid sampler names: a, b"
    check_name("sampler", "a", ["a"])
    with pytest.raises(ValueError, match="did you mean 'linear'"):
        check_name("schedule", "liner", SCHEDULES)


# --- Knob metadata


def test_every_declared_knob_is_a_knob():
    names = set(SamplerConfig.knob_names())
    assert set(ALWAYS_READ) <= names and set(PARENT_KNOBS) <= names
    for parent, registry in PARENTS.items():
        for name, entry in registry.items():
            assert entry.name == name and set(entry.knobs) <= names, (parent, name)


@pytest.mark.parametrize(("parents", "reads", "ignores"), [
    ({}, {"rho", "alpha", "schedule", "scaling", "s_churn", "churn_noise"}, {"epsilon_s", "order", "eta"}),
    ({"discretization": "vp"}, {"epsilon_s", "alpha"}, {"rho"}),
    ({"discretization": "ve"}, set(), {"rho", "epsilon_s"}),
    ({"sampler": "euler", "schedule": "vp"}, {"epsilon_s", "rho", "s_tmax"}, {"alpha"}),
    ({"sampler": "dpmpp_2m"}, {"rho"}, {"schedule", "scaling", "s_churn", "churn_noise", "alpha", "order"}),
    ({"sampler": "ipndm", "discretization": "iddpm"}, {"order"}, {"rho", "epsilon_s", "eta", "s_noise"}),
    ({"sampler": "euler_ancestral"}, {"eta"}, {"s_churn", "order"}),
    ({"sampler": "dpm_2"}, {"s_churn", "s_tmin", "churn_noise"}, {"schedule", "alpha"}),
])
def test_knobs_read_follow_the_parents(parents, reads, ignores):
    read = knobs_read(parents)
    assert set(ALWAYS_READ) <= read and reads <= read and not (ignores & read)


def test_ignored_knobs_names_who_reads_them():
    reasons = ignored_knobs({"discretization": "vp", "rho": 6.6})
    assert list(reasons) == ["rho"] and reasons["rho"].startswith(
        "has no effect with sampler 'heun', discretization 'vp', schedule 'linear' and scaling 'none'; "
        "it is read by discretization")  # 'edm' (and any other registered discretization that reads rho)
    assert "'edm'" in reasons["rho"]
    assert ignored_knobs({"sampler": "ipndm", "schedule": "vp"})["schedule"].endswith(
        "it is read by samplers 'euler', 'heun'")
    assert ignored_knobs({"sampler": "heun", "schedule": "vp", "epsilon_s": 0.01}) == {}
    with pytest.raises(ValueError, match=r"unknown knob 's_chrun'; did you mean 's_churn'\?"):
        ignored_knobs({"s_chrun": 1.0})
    with pytest.raises(ValueError, match="unknown discretization 'karras'"):
        knobs_read({"discretization": "karras"})


def test_defaults_live_in_sampler_config_only():
    defaults = SamplerConfig.defaults()
    assert defaults["sampler"] == "heun" and defaults["num_steps"] == 18 and "extra" not in defaults
    assert SamplerConfig.from_dict(defaults) == SamplerConfig() and SamplerConfig().to_dict() == defaults


# A non-default valid value for every built-in knob (what a study might suggest).
OTHER_VALUES = {"num_steps": 5, "sigma_min": 0.01, "sigma_max": 50.0, "rho": 5.0, "s_churn": 2.0,
                "s_tmin": 0.01, "s_tmax": 40.0, "s_noise": 1.01, "churn_noise": "in_window", "alpha": 0.5,
                "order": 2, "eta": 0.5, "epsilon_s": 0.01}


BUILT_IN_DISCRETIZATIONS = ("edm", "vp", "ve", "iddpm")  # the ones whose knobs OTHER_VALUES covers


def _all_parent_choices():
    for sampler, disc in itertools.product(SAMPLERS, BUILT_IN_DISCRETIZATIONS):
        base = {"sampler": sampler, "discretization": disc}
        if "schedule" not in knobs_read(base):
            yield base
            continue
        for schedule, scaling in itertools.product(SCHEDULES, SCALINGS):
            yield {**base, "schedule": schedule, "scaling": scaling}


def test_a_config_accepts_exactly_the_knobs_it_reads_and_runs_with_all_of_them():
    """Over every parent choice: a knob moved off its default is accepted iff ``knobs_read`` has it, and
    the config with every read knob moved runs with the counted NFE of its registry formula."""
    den = GaussianDenoiser((1, 1, 2), mean=0.2, std=0.6)
    ns = NoiseSource([0, 1])
    for parents in _all_parent_choices():
        read = knobs_read(parents)
        for knob, value in OTHER_VALUES.items():
            if knob in read:
                SamplerConfig(**parents, **{knob: value})
            else:
                with pytest.raises(ValueError, match=f"{knob}=.* has no effect with sampler"):
                    SamplerConfig(**parents, **{knob: value})
        config = SamplerConfig(**parents, **{k: v for k, v in OTHER_VALUES.items() if k in read})
        result = sample(den, config, ns.latents(den.image_shape), noise_source=ns)
        assert result.nfe == config.nfe and torch.isfinite(result.x).all(), parents


# --- Adding a sampler (or a discretisation) with a new knob is one registration


def check_gain(value):
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 2:
        raise ValueError(f"step_gain must be a number in (0, 2], got {value!r}")
    return float(value)


CALLS: list[dict] = []


def scaled_euler(denoiser, noise, sigmas, *, noise_source, class_labels=None, churn=None, callback=None,
                 step_gain=1.0):
    """Euler with its step scaled by ``step_gain`` (1 = Euler); records the knob it was given."""
    CALLS.append({"step_gain": step_gain})
    x, ts = start(noise, sigmas)
    for t, t_next in zip(ts[:-1], ts[1:], strict=True):
        d, _ = ode_derivative(denoiser, x, t, class_labels)
        x = x + step_gain * (t_next - t) * d
    return x


SCALED_EULER = SamplerInfo("scaled_euler", scaled_euler, 1, lambda n: n, False, False, ("step_gain",),
                           "test-only: Euler with a scaled step")
STEP_GAIN = Knob("step_gain", 1.0, check_gain, "test-only: step multiplier of scaled_euler")


def test_a_new_sampler_with_a_new_knob_is_one_registration():
    before = SamplerConfig.knob_names()
    den = GaussianDenoiser((1, 1, 2))
    ns = NoiseSource([3])
    with registered("sampler", SCALED_EULER, STEP_GAIN):
        config = SamplerConfig.from_dict({"sampler": "scaled_euler", "num_steps": 4, "step_gain": 0.5})
        assert config.step_gain == 0.5 == config.knob("step_gain") and config.to_dict()["step_gain"] == 0.5
        assert SamplerConfig.from_dict(config.to_dict()) == config
        assert "step_gain" in knobs_read({"sampler": "scaled_euler"})
        assert "step_gain" not in knobs_read({"sampler": "heun"})
        CALLS.clear()
        result = sample(den, config, ns.latents(den.image_shape), noise_source=ns)
        assert CALLS == [{"step_gain": 0.5}] and result.nfe == 4
        with pytest.raises(ValueError, match=r"step_gain=0.5 has no effect with sampler 'heun'.*read by "
                                             r"sampler 'scaled_euler'"):
            SamplerConfig.from_dict({"step_gain": 0.5})
        with pytest.raises(ValueError, match=r"step_gain must be a number in \(0, 2\]"):
            SamplerConfig(sampler="scaled_euler", extra={"step_gain": 3.0})
        assert SamplerConfig(sampler="scaled_euler", extra={"step_gain": 1.0}) == SamplerConfig(
            sampler="scaled_euler")  # a knob at its default is not stored
    assert "scaled_euler" not in SAMPLERS and "step_gain" not in KNOBS
    assert SamplerConfig.knob_names() == before
    with pytest.raises(ValueError, match="unknown SamplerConfig key 'step_gain'"):
        SamplerConfig.from_dict({"step_gain": 0.5})


def shifted_levels(num_steps, sigma_min, sigma_max, shift=0.0):
    """EDM's rho = 7 levels with every level multiplied by (1 + shift), clipped to the range."""
    return edm_levels(num_steps, sigma_min, sigma_max).mul(1 + shift).clamp(sigma_min, sigma_max)


def test_a_new_discretization_with_a_new_knob_is_one_registration():
    def check_shift(value):
        if not (isinstance(value, float) and -0.5 < value < 0.5):
            raise ValueError(f"shift must be a float in (-0.5, 0.5), got {value!r}")
        return value

    info = DiscretizationInfo("shifted", shifted_levels, lambda **_: (0.002, 80.0), ("shift",), "test-only")
    with registered("discretization", info, Knob("shift", 0.0, check_shift, "test-only level shift")):
        config = SamplerConfig(discretization="shifted", num_steps=6, extra={"shift": -0.1})
        expected = edm_levels(6, 0.002, 80.0) * 0.9
        torch.testing.assert_close(sigmas_for(config)[:-1], expected.clamp(0.002, 80.0), rtol=0, atol=0)
        assert "shift" in knobs_read({"discretization": "shifted"}) and "rho" not in knobs_read(
            {"discretization": "shifted"})
        with pytest.raises(ValueError, match="shift=-0.1 has no effect .* read by discretization 'shifted'"):
            SamplerConfig(extra={"shift": -0.1})
    assert "shifted" not in DISCRETIZATIONS and "shift" not in KNOBS
    assert math.isclose(sigmas_for(SamplerConfig(num_steps=6))[0].item(), 80.0)
