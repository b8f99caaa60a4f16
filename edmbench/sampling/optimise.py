"""A training-free schedule optimiser: a GITS-style dynamic programme over a teacher trajectory.

Chen et al. (ICML 2024, "On the trajectory regularity of ODE-based diffusion sampling", GITS): run a
high-accuracy teacher on a fine grid of noise levels g_0 = sigma_max > ... > g_M for a batch of seeds, then
cost every jump g_i -> g_j (i < j) by the local error of *one step of the given solver* started on the
teacher's state,

    c(i, j) = mean over seeds of || step(x_i^teacher; g_i -> g_j) - x_j^teacher ||_2 / sqrt(dim),

and pick the N-step path g_0 -> g_M minimising the accumulated cost sum c (exact, O(N M^2)). For solvers
that evaluate once per step (euler, and the multistep solvers, whose first step is the one-step method)
the step reuses the teacher's D(x_i; g_i), so the cost matrix is free; for two-stage solvers (heun, dpm_2)
each jump costs one extra call. The fine grid is uniform in log sigma, plus EDM's rho = 7 levels for the
asked N, so rho = 7 is always a feasible path and the optimum's accumulated cost is never above it.

Cost, in network calls per seed (``OptimisedSchedule.network_calls``): the teacher's calls plus those of the
cost matrix; multiply by ``num_samples`` for the total. :func:`optimise_schedules` shares one teacher (and one
cost matrix per solver) among several N, whose grid then holds rho = 7's levels for each of them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from edmbench.denoisers.base import CountingDenoiser, Denoiser
from edmbench.sampling.conventions import EDM, Convention
from edmbench.sampling.noise import NoiseSource
from edmbench.sampling.ode import denoise
from edmbench.sampling.registry import get_sampler
from edmbench.sampling.spacings import logsnr_levels, polynomial_levels


@dataclasses.dataclass(frozen=True)
class OptimisedSchedule:
    """The optimiser's output: ``levels`` (float64, sigma_max .. last non-zero level) for ``convention``."""

    sampler: str
    num_steps: int
    convention: Convention
    levels: Tensor
    cost: float                # accumulated local error of the chosen path
    rho7_cost: float           # the same for EDM's rho = 7 levels (a feasible path on the grid)
    grid_size: int             # fine-grid levels (without the final 0)
    num_samples: int
    network_calls: int         # per seed: teacher + cost matrix

    @property
    def total_network_calls(self) -> int:
        return self.network_calls * self.num_samples

    @property
    def sigmas(self) -> list[float]:
        """The schedule as a ``knots`` list (ends in 0 under the ``zero`` end point)."""
        return self.convention.sigmas(self.levels).tolist()


class _Given:
    """A denoiser whose first call returns a known D(x; sigma) (the teacher's), later calls pass through."""

    def __init__(self, inner: Denoiser, first: Tensor) -> None:
        self.inner, self.first = inner, first

    def __call__(self, x: Tensor, sigma: Tensor | float, class_labels: Tensor | None = None) -> Tensor:
        if self.first is not None:
            out, self.first = self.first, None
            return out
        return self.inner(x, sigma, class_labels)

    def round_sigma(self, sigma):
        return self.inner.round_sigma(sigma)

    def __getattr__(self, name: str):
        if name in ("inner", "first"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def fine_grid(level_counts: Sequence[int], sigma_min: float, sigma_max: float, grid_size: int) -> Tensor:
    """``grid_size`` log-uniform levels merged with rho = 7's levels for each count (descending, unique)."""
    merged = torch.cat([logsnr_levels(grid_size, sigma_min, sigma_max),
                        *(polynomial_levels(n, sigma_min, sigma_max, 7.0) for n in level_counts)])
    return torch.unique(merged).flip(0)


def teacher_states(denoiser: Denoiser, nodes: Tensor, noise: Tensor, *, substeps: int,
                   class_labels: Tensor | None = None) -> tuple[list[Tensor], list[Tensor]]:
    """The teacher's x at every node and D(x; sigma) at every node but the last (Heun with ``substeps``
    log-uniform sub-steps per interval; a final node 0 is reached by its Euler step, i.e. a denoise)."""
    heun = get_sampler("heun").fn
    x = noise.to(torch.float64) * float(nodes[0])
    xs, ds = [x], []
    for a, b in zip(nodes[:-1].tolist(), nodes[1:].tolist(), strict=True):
        ds.append(denoise(denoiser, x, a, class_labels))
        sub = logsnr_levels(substeps + 1, b, a) if b > 0 else torch.tensor([a, 0.0], dtype=torch.float64)
        x = heun(_Given(denoiser, ds[-1]), x / a, sub, noise_source=None, class_labels=class_labels)
        xs.append(x)
    return xs, ds


def local_cost(sampler: str, denoiser: Denoiser, xs: list[Tensor], ds: list[Tensor], nodes: Tensor,
               class_labels: Tensor | None = None, solver_params: dict | None = None) -> Tensor:
    """``[M+1, M+1]`` float64 costs c(i, j) (inf where j <= i): one ``sampler`` step from the teacher."""
    fn, params = get_sampler(sampler).fn, dict(solver_params or {})
    m = len(nodes)
    cost = torch.full((m, m), math.inf, dtype=torch.float64)
    dim = xs[0][0].numel()
    for i in range(m - 1):
        for j in range(i + 1, m):
            given = _Given(denoiser, ds[i])
            two = torch.tensor([float(nodes[i]), float(nodes[j])], dtype=torch.float64)
            with torch.no_grad():
                step = fn(given, xs[i] / float(nodes[i]), two, noise_source=None, class_labels=class_labels,
                          **params)
            err = (step - xs[j]).flatten(1).norm(dim=1) / math.sqrt(dim)
            cost[i, j] = err.mean()
    return cost


def shortest_path(cost: Tensor, num_hops: int) -> tuple[list[int], float]:
    """The path 0 -> M with exactly ``num_hops`` hops minimising the summed cost (dynamic programme)."""
    m = cost.shape[0]
    if not 1 <= num_hops <= m - 1:
        raise ValueError(f"{num_hops} steps need between 1 and {m - 1} grid intervals; use a finer grid")
    best = torch.full((num_hops + 1, m), math.inf, dtype=torch.float64)
    back = torch.zeros((num_hops + 1, m), dtype=torch.long)
    best[0, 0] = 0.0
    for n in range(1, num_hops + 1):
        total = best[n - 1].unsqueeze(1) + cost  # [i, j]
        best[n], back[n] = total.min(dim=0)
    path = [m - 1]
    for n in range(num_hops, 0, -1):
        path.append(int(back[n, path[-1]]))
    return path[::-1], float(best[num_hops, m - 1])


def path_cost(cost: Tensor, path: list[int]) -> float:
    return float(sum(cost[a, b] for a, b in zip(path[:-1], path[1:], strict=True)))


def optimise_schedule(denoiser: Denoiser, sampler: str, num_steps: int, **options: Any) -> OptimisedSchedule:
    """The ``num_steps``-step schedule minimising ``sampler``'s accumulated local error against a Heun
    teacher (:func:`optimise_schedules` for one pair; the same keyword options)."""
    return optimise_schedules(denoiser, [sampler], [num_steps], **options)[0]


def optimise_schedules(denoiser: Denoiser, samplers: Sequence[str], steps: Sequence[int], *,
                       sigma_min: float = 0.002, sigma_max: float = 80.0, convention: Convention = EDM,
                       num_samples: int = 256, seed_start: int = 0, grid_size: int = 60, substeps: int = 4,
                       class_labels: Tensor | None = None, solver_params: dict | None = None,
                       device: str = "cpu") -> list[OptimisedSchedule]:
    """One schedule per (sampler, num_steps), in that order: one Heun teacher (``substeps`` sub-steps per
    fine-grid interval) on seeds ``seed_start ..`` over one fine grid (log-uniform plus rho = 7's levels of
    every asked N), one cost matrix per sampler, one dynamic programme per pair. Each result's
    ``network_calls`` is the whole run's (teacher + every cost matrix), per seed."""
    if convention.afs:
        raise ValueError("optimise the schedule with afs = false; AFS only replaces the first call")
    if not samplers or not steps or min(steps) < 1:
        raise ValueError(f"need at least one sampler and num_steps >= 1, got {list(samplers)}, {list(steps)}")
    counts = sorted({convention.num_levels(n) for n in steps})
    levels = fine_grid(counts, sigma_min, sigma_max, grid_size)
    nodes = convention.sigmas(levels) if convention.endpoint == "zero" else levels
    seeds = range(seed_start, seed_start + num_samples)
    noise = NoiseSource(seeds, device=device).latents(denoiser.image_shape)
    counter = CountingDenoiser(denoiser)
    with torch.no_grad():
        xs, ds = teacher_states(counter, nodes, noise, substeps=substeps, class_labels=class_labels)
        costs = {s: local_cost(s, counter, xs, ds, nodes, class_labels, solver_params) for s in samplers}
    out = []
    for sampler in samplers:
        for num_steps in steps:
            out.append(_best_path(costs[sampler], nodes, sampler, num_steps, convention, sigma_min, sigma_max,
                                  len(levels), num_samples, counter.calls))
    return out


def _best_path(cost: Tensor, nodes: Tensor, sampler: str, num_steps: int, convention: Convention,
               sigma_min: float, sigma_max: float, grid_size: int, num_samples: int,
               calls: int) -> OptimisedSchedule:
    """The DP's ``num_steps``-step path on one cost matrix, with rho = 7's cost on the same grid."""
    path, total = shortest_path(cost, num_steps)
    rho7 = polynomial_levels(convention.num_levels(num_steps), sigma_min, sigma_max, 7.0)
    rho7_nodes = convention.sigmas(rho7) if convention.endpoint == "zero" else rho7
    rho7_path = [int(torch.argmin((nodes - s).abs())) for s in rho7_nodes]
    chosen = nodes[path]
    chosen = chosen[:-1] if convention.endpoint == "zero" else chosen
    return OptimisedSchedule(sampler=sampler, num_steps=num_steps, convention=convention, levels=chosen,
                             cost=total, rho7_cost=path_cost(cost, rho7_path), grid_size=grid_size,
                             num_samples=num_samples, network_calls=calls)
