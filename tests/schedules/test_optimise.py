"""The GITS-style optimiser on an exact Gaussian mixture: its schedules beat rho = 7 against the exact ODE."""

from __future__ import annotations

import pytest
import torch

from edmbench.sampling.conventions import sample_levels
from edmbench.sampling.noise import NoiseSource
from edmbench.sampling.optimise import optimise_schedule, shortest_path
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
