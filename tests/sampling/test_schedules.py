"""Schedules against the fact sheet's numbers (edm-facts.md §2, §9) and property tests."""

from __future__ import annotations

import math
import random

import pytest
import torch

from edmbench.denoisers.iddpm import iddpm_u
from edmbench.sampling import SamplerConfig, sigmas_for
from edmbench.sampling.discretizations import default_range, iddpm_levels, make_sigmas, resolve_range
from edmbench.sampling.schedules import (
    SCHEDULES,
    LinearSchedule,
    NoScaling,
    VPScaling,
    VPSchedule,
    vp_betas,
    vp_sigma,
)

# edm-facts.md §9.1-9.3 (numpy float64 [calc]); rtol 1e-9 as the sheet says.
EDM_18 = [80, 57.585984721, 40.785573797, 28.374584604, 19.352452980, 12.910082381, 8.4009353091,
          5.3151945218, 3.2568215198, 1.9233398370, 1.0881706365, 0.58534812319, 0.29644228448,
          0.13951646873, 0.059947311235, 0.022934518372, 0.0075280199628, 0.002, 0]
EDM_5 = [80, 17.527831965, 2.5152189761, 0.16975275627, 0.002, 0]
EDM_10 = [80, 42.415189319, 21.108676736, 9.7232013553, 4.0661236030, 1.5017419791, 0.46997905800,
          0.11663856353, 0.020435334553, 0.002, 0]


def edm(num_steps: int, rho: float = 7.0) -> torch.Tensor:
    return make_sigmas("edm", num_steps, 0.002, 80.0, rho=rho)


@pytest.mark.parametrize(("num_steps", "expected"), [(5, EDM_5), (10, EDM_10), (18, EDM_18)])
def test_edm_schedule_matches_fact_sheet(num_steps, expected):
    sigmas = edm(num_steps)
    assert sigmas.dtype == torch.float64 and sigmas.shape == (num_steps + 1,)
    torch.testing.assert_close(sigmas, torch.tensor(expected, dtype=torch.float64), rtol=1e-9, atol=0)
    assert sigmas[0].item() == 80.0  # §9.1: t_0 == 80 exactly in float64


def test_edm_40_and_sums():
    s40 = edm(40)
    # §9.3: first values and last non-zero values of N = 40; sums of t for N = 18/40/256.
    torch.testing.assert_close(s40[:4], torch.tensor([80, 69.4509460372, 60.1173947626, 51.8803181373],
                                                     dtype=torch.float64), rtol=1e-9, atol=0)
    torch.testing.assert_close(s40[-4:-1], torch.tensor([0.0064371133, 0.0036765892, 0.002],
                                                        dtype=torch.float64), rtol=1e-8, atol=0)
    for n, total in [(18, 260.10685703), (40, 540.97673548), (256, 3309.65419531)]:
        assert edm(n).sum().item() == pytest.approx(total, rel=1e-9)


def test_rho_one_is_linear():
    # §9.4: rho = 1, N = 5. atol: 80 + (0.002 - 80) cancels, leaving a few ulps of 80 (~1e-14).
    torch.testing.assert_close(edm(5, rho=1.0), torch.tensor([80, 60.0005, 40.001, 20.0015, 0.002, 0],
                                                             dtype=torch.float64), rtol=1e-12, atol=1e-13)


def test_vp_discretization_and_betas():
    lo, hi = default_range("vp")
    # §2/§9.9: sigma_VP(1e-3) = 0.0104859928, sigma_VP(1) = 152.166970284; betas come back as 19.9 / 0.1.
    assert lo == pytest.approx(0.0104859927867, rel=1e-10) and hi == pytest.approx(152.166970284, rel=1e-10)
    beta_d, beta_min = vp_betas(lo, hi)
    assert beta_d == pytest.approx(19.9, abs=1e-12) and beta_min == pytest.approx(0.1, abs=1e-12)
    # §9.12: the ablation vp discretisation, N = 18.
    expected = [152.166970, 86.0101643, 50.3112582, 30.4516752, 19.0662576, 12.3418500, 8.25080416,
                5.68634370, 4.02875541, 2.92239160, 2.15825648, 1.61068837, 1.20238696, 0.884631108,
                0.625819129, 0.404653370, 0.205888134, 0.0104859928]
    sigmas = make_sigmas("vp", 18, lo, hi)
    torch.testing.assert_close(sigmas[:-1], torch.tensor(expected, dtype=torch.float64), rtol=1e-8, atol=0)


def test_ve_discretization_is_geometric():
    sigmas = make_sigmas("ve", 18, *default_range("ve"))[:-1]
    ratios = sigmas[1:] / sigmas[:-1]
    # §9.12: geometric from 100 to 0.02 with ratio 0.605917546.
    torch.testing.assert_close(ratios, torch.full_like(ratios, 0.605917546), rtol=1e-9, atol=0)
    assert sigmas[0].item() == pytest.approx(100) and sigmas[-1].item() == pytest.approx(0.02, rel=1e-12)


def test_iddpm_table_and_picks():
    u = iddpm_u()
    # §9.11 all-float64 values [calc]; the table uses EDM's float32 ratios (§2 "iddpm"), so the entries
    # differ: by ~1e-7 relative at the large end and up to 4.6e-4 at the small end (u_999 = 0.0064224696,
    # §2). test_nvidia_levels.py pins every entry against EDM's arithmetic.
    expected = {0: 20291.16961, 1: 641.662345118, 8: 80.2037018455}
    for j, value in expected.items():
        assert u[j].item() == pytest.approx(value, rel=1e-6, abs=0)
    assert u[999].item() == pytest.approx(0.0064224696, rel=1e-8) and u[1000].item() == 0.0
    assert int(((u >= 0.002) & (u <= 81)).sum()) == 992
    picks = [80.2037, 9.68785, 5.06820, 3.41076, 2.53610, 1.98839, 1.60238, 1.32002, 1.09800, 0.913312,
             0.759765, 0.625997, 0.504630, 0.395845, 0.294571, 0.198506, 0.104037, 0.00642247]
    # rtol ~1e-5: §9.11 prints 6 digits; the last is u_999 of EDM's float32-ratio table (§2), not §9.11's
    # float64 0.00642541.
    torch.testing.assert_close(iddpm_levels(18, 0.002, 81.0), torch.tensor(picks, dtype=torch.float64),
                               rtol=1e-5, atol=0)


@pytest.mark.parametrize("name", ["linear", "ve", "vp"])
def test_schedule_inverse_and_derivative(name):
    sched = SCHEDULES.get(name).build(0.002, 80.0, **({"epsilon_s": 1e-3} if name == "vp" else {}))
    for t in [0.01, 0.2, 0.7, 1.0]:
        assert sched.sigma_inv(sched.sigma(t)) == pytest.approx(t, rel=1e-12)
        h = 1e-6 * t  # central difference, error O(h^2)
        numeric = (sched.sigma(t + h) - sched.sigma(t - h)) / (2 * h)
        assert sched.sigma_deriv(t) == pytest.approx(numeric, rel=1e-7)


def test_vp_scaling_derivative():
    sched, scaling = VPSchedule(), VPScaling()
    for t in [0.05, 0.5, 1.0]:
        s, s_dot = scaling(sched, t)
        assert s == pytest.approx(1 / math.sqrt(1 + sched.sigma(t) ** 2), rel=1e-14)
        h = 1e-6 * t
        numeric = (scaling(sched, t + h)[0] - scaling(sched, t - h)[0]) / (2 * h)
        assert s_dot == pytest.approx(numeric, rel=1e-7)
    assert NoScaling()(sched, 0.3) == (1.0, 0.0)
    assert LinearSchedule().sigma_inv(0.3) == 0.3


def _vp_curve_increasing(lo: float, hi: float, eps: float = 1e-3) -> bool:
    """Independent check: a t^2 + b t through (eps, log1p(lo^2)), (1, log1p(hi^2)) rises on [eps, 1]."""
    y0, y1 = math.log1p(lo**2), math.log1p(hi**2)
    a = (y0 / eps - y1) / (eps - 1)  # = beta_d / 2
    b = y1 - a
    return 2 * a * eps + b > 0 and 2 * a + b > 0


def test_properties_for_random_valid_parameters():
    rng = random.Random(1234)
    for _ in range(200):
        disc = rng.choice(["edm", "vp", "ve", "iddpm"])
        num_steps = rng.randint(1, 300)
        lo = 10 ** rng.uniform(-3, -0.5)
        hi = 10 ** rng.uniform(1, 3)  # the VP curve needs sigma_max well above sigma_min
        rho = rng.uniform(0.5, 12)
        num_steps = min(num_steps, 50) if disc == "iddpm" else num_steps
        if disc == "vp" and not _vp_curve_increasing(lo, hi):
            with pytest.raises(ValueError, match="no increasing VP curve"):
                make_sigmas(disc, num_steps, lo, hi)
            continue
        sigmas = make_sigmas(disc, num_steps, lo, hi, rho=rho)
        assert sigmas.dtype == torch.float64
        assert sigmas[-1].item() == 0 and (sigmas[:-1] > sigmas[1:]).all(), (disc, num_steps, lo, hi, rho)
        if disc != "iddpm":  # the iDDPM table only approximates the range ends
            assert len(sigmas) == num_steps + 1
            assert sigmas[0].item() == pytest.approx(hi, rel=1e-10)
            if num_steps > 1:
                assert sigmas[-2].item() == pytest.approx(lo, rel=1e-10)


def test_single_step_is_sigma_max_then_zero():
    # N = 1 would be 0/0 in the rho formula; we define it as the single level sigma_max.
    for disc in ["edm", "vp", "ve"]:
        lo, hi = default_range(disc)
        sigmas = make_sigmas(disc, 1, lo, hi)
        assert sigmas.tolist() == pytest.approx([hi, 0.0], rel=1e-12)
    assert SamplerConfig(num_steps=1).nfe == 1


def test_clamping_and_rounding_in_one_place():
    class Discrete:
        sigma_min, sigma_max, image_shape, label_dim = 0.02, 50.0, (1, 1, 2), 0

        def round_sigma(self, sigma):
            return torch.round(torch.as_tensor(sigma) * 100) / 100  # a grid of 0.01

    sigmas = sigmas_for(SamplerConfig(num_steps=5), Discrete())
    levels = make_sigmas("edm", 5, 0.02, 50.0)[:-1]  # clamped range [0.02, 50], §1 step 1
    torch.testing.assert_close(sigmas[:-1], torch.round(levels * 100) / 100)
    assert sigmas.dtype == torch.float64 and sigmas[-1] == 0
    with pytest.raises(ValueError, match="repeated noise levels"):
        sigmas_for(SamplerConfig(num_steps=200), Discrete())
    assert resolve_range("ve", None, None, 0.0, math.inf) == (0.02, 100.0)
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        resolve_range("edm", 5.0, None, 0.0, 1.0)


def test_vp_range_without_increasing_curve_is_refused():
    with pytest.raises(ValueError, match="no increasing VP curve"):
        make_sigmas("vp", 10, 0.5, 60.0)  # beta_d' < 0: the fitted curve would rise and fall


def test_vp_sigma_matches_fact_sheet():
    assert vp_sigma(1e-5) == pytest.approx(0.00100049762665, rel=1e-10)  # §9.9


def test_edm_schedule_rounded_to_the_iddpm_u():
    """§9.11: edm_sampler on an iDDPM net (N = 18) rounds to u-indices [8, 11, ..., 999]."""
    u = iddpm_u()

    class NearestU:
        sigma_min, sigma_max, image_shape, label_dim = u[999].item(), u[0].item(), (1, 1, 2), 0

        def round_sigma(self, sigma):
            sigma = torch.as_tensor(sigma, dtype=torch.float64)
            return u[(sigma.reshape(-1, 1) - u.reshape(1, -1)).abs().argmin(1)].reshape(sigma.shape)

    sigmas = sigmas_for(SamplerConfig(), NearestU())
    indices = [int((u - s).abs().argmin()) for s in sigmas[:-1]]
    assert indices == [8, 11, 15, 21, 31, 45, 67, 101, 157, 247, 384, 561, 735, 861, 937, 976, 993, 999]


def test_tiny_rho_is_refused_with_its_name():
    # 80^(1/rho) overflows float64 for rho < ln(80)/709.78 = 0.0062; the error names rho, not "math range".
    with pytest.raises(ValueError, match=r"rho=1e-300 is too small for sigma_max=80.0"):
        sigmas_for(SamplerConfig(rho=1e-300))
