"""The GITS-style optimiser on an exact Gaussian mixture: its schedules beat rho = 7 against the exact ODE."""

from __future__ import annotations

import pytest
import torch

from edmbench.sampling.conventions import sample_levels
from edmbench.sampling.noise import NoiseSource
from edmbench.sampling.optimise import optimise_schedule, optimise_schedules, shortest_path
from edmbench.sampling.spacings import polynomial_levels

HELD_OUT = range(10_000, 10_256)  # the optimiser sees seeds 0..; errors are measured on these


@pytest.fixture(scope="module")
def reference(gmm):
    """High-accuracy solution of the exact ODE: Heun on 800 rho = 7 levels (error ~N^-2, far below 1e-2)."""
    noise = NoiseSource(HELD_OUT).latents(gmm.image_shape)
    return noise, sample_levels(gmm, "heun", polynomial_levels(800, 0.002, 80.0, 7.0), noise,
                                noise_source=None).x


def _error(gmm, reference, sampler, levels):
    noise, exact = reference
    x = sample_levels(gmm, sampler, levels, noise, noise_source=None).x
    return float((x - exact).flatten(1).norm(dim=1).mean())


def test_shortest_path_by_hand():
    inf = float("inf")
    cost = torch.tensor([[inf, 1, 5, 9], [inf, inf, 1, 5], [inf, inf, inf, 1], [inf] * 4],
                        dtype=torch.float64)
    assert shortest_path(cost, 3) == ([0, 1, 2, 3], 3.0)
    assert shortest_path(cost, 2) == ([0, 1, 3], 6.0) or shortest_path(cost, 2) == ([0, 2, 3], 6.0)
    assert shortest_path(cost, 1) == ([0, 3], 9.0)


def _check(gmm, reference, sampler, num_steps, **kwargs):
    opt = optimise_schedule(gmm, sampler, num_steps, **kwargs)
    assert opt.levels.shape == (num_steps,) and (opt.levels.diff() < 0).all()
    assert opt.cost <= opt.rho7_cost + 1e-12  # rho = 7 is a feasible path of the grid
    e_opt = _error(gmm, reference, sampler, opt.levels)
    e_rho = _error(gmm, reference, sampler, polynomial_levels(num_steps, 0.002, 80.0, 7.0))
    assert e_opt < e_rho, (sampler, num_steps, e_opt, e_rho)
    return opt


@pytest.mark.parametrize("num_steps", range(4, 11))
def test_optimised_euler_beats_rho7(gmm, reference, num_steps):
    opt = _check(gmm, reference, "euler", num_steps, num_samples=128, grid_size=40, substeps=3)
    # Heun teacher, 3 sub-steps (6 calls) on each of the grid_size - 1 intervals above 0, then one denoise
    # to the final 0; the Euler cost matrix reuses the teacher's D at the nodes (no extra call).
    assert opt.network_calls == (opt.grid_size - 1) * 2 * 3 + 1


@pytest.mark.slow
@pytest.mark.parametrize("num_steps", range(4, 11))
def test_optimised_heun_beats_rho7(gmm, reference, num_steps):
    _check(gmm, reference, "heun", num_steps, num_samples=128, grid_size=40, substeps=3)


def test_one_teacher_serves_several_solvers_and_step_counts(gmm, reference):
    options = {"num_samples": 64, "grid_size": 30, "substeps": 2}
    both = optimise_schedules(gmm, ["euler", "ipndm"], [4, 7], **options)
    pairs = [(r.sampler, r.num_steps) for r in both]
    assert pairs == [("euler", 4), ("euler", 7), ("ipndm", 4), ("ipndm", 7)]
    # one teacher on one grid (log-uniform + rho = 7's levels of both N); no cost-matrix calls for these
    assert len({r.network_calls for r in both}) == 1 and len({r.grid_size for r in both}) == 1
    assert both[0].network_calls == (both[0].grid_size - 1) * 2 * 2 + 1
    for r in both:
        assert r.cost <= r.rho7_cost + 1e-12 and r.levels.shape == (r.num_steps,)
    # the first step of ipndm is Euler's, so the one-step costs and the chosen schedules agree
    torch.testing.assert_close(both[0].levels, both[2].levels, rtol=0, atol=0)
    alone = optimise_schedule(gmm, "euler", 4, **options)
    assert alone.grid_size < both[0].grid_size and alone.cost <= alone.rho7_cost + 1e-12
