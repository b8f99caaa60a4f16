"""``sample``: the one entry point that turns a SamplerConfig and unit-variance noise into samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from edmbench.denoisers.base import CountingDenoiser, Denoiser
from edmbench.registry import Registry
from edmbench.sampling.config import SamplerConfig
from edmbench.sampling.conventions import run_solver
from edmbench.sampling.discretizations import DISCRETIZATIONS, make_sigmas, resolve_range
from edmbench.sampling.noise import NoiseSource
from edmbench.sampling.ode import Callback
from edmbench.sampling.schedules import SCALINGS, SCHEDULES

# Solver params that are passed as objects built from their registry entry (for the resolved range).
_BUILT: dict[str, Registry[Any]] = {"schedule": SCHEDULES, "scaling": SCALINGS}


@dataclass(frozen=True)
class SampleResult:
    """``x``: float64 samples ``[B, C, H, W]``; ``nfe``: counted evaluations per sample; ``sigmas``: the
    float64 schedule actually used (clamped, rounded, ending in 0)."""

    x: Tensor
    nfe: int
    sigmas: Tensor


def _knobs(config: SamplerConfig, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: config.knob(name) for name in names}


def _range(config: SamplerConfig, denoiser: Denoiser | None) -> tuple[float, float]:
    lo, hi = (0.0, float("inf")) if denoiser is None else (denoiser.sigma_min, denoiser.sigma_max)
    knobs = _knobs(config, DISCRETIZATIONS.get(config.discretization).knobs)
    return resolve_range(config.discretization, config.sigma_min, config.sigma_max, lo, hi, **knobs)


def sigmas_for(config: SamplerConfig, denoiser: Denoiser | None = None) -> Tensor:
    """The float64 ``[num_steps + 1]`` noise levels of ``config``, clamped to and rounded by ``denoiser``
    (ending in 0 under the ``zero`` end point, at sigma_min under the others; ``sampling.conventions``)."""
    sigma_min, sigma_max = _range(config, denoiser)
    knobs = _knobs(config, DISCRETIZATIONS.get(config.discretization).knobs)
    sigmas = make_sigmas(config.discretization, config.convention.num_levels(config.num_steps), sigma_min,
                         sigma_max, round_sigma=None if denoiser is None else denoiser.round_sigma, **knobs)
    return sigmas if config.endpoint == "zero" else sigmas[:-1]


def solver_params(config: SamplerConfig, denoiser: Denoiser | None = None) -> dict[str, Any]:
    """The keyword arguments ``config`` passes to its registered solver function (beyond the common ones):
    each of the sampler's ``params`` by name; schedule/scaling as objects built by their registry entry
    for the resolved range; a None value (e.g. ``order``) is left out so the solver's default applies."""
    params: dict[str, Any] = {}
    for name in config.info.params:
        value = config.knob(name)
        if name in _BUILT:
            entry = _BUILT[name].get(value)
            value = entry.build(*_range(config, denoiser), **_knobs(config, entry.knobs))
        if value is not None:
            params[name] = value
    return params


def sample(denoiser: Denoiser, config: SamplerConfig, noise: Tensor, *, noise_source: NoiseSource,
           class_labels: Tensor | None = None, callback: Callback | None = None) -> SampleResult:
    """Run ``config``'s sampler from unit-variance ``noise`` ``[B, C, H, W]``; per-step noise comes from
    ``noise_source`` (one generator per image seed). The counted NFE must equal ``config.nfe``."""
    if tuple(noise.shape[1:]) != tuple(denoiser.image_shape):
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected [B, "
                         f"{', '.join(map(str, denoiser.image_shape))}] for this denoiser")
    if noise.shape[0] != len(noise_source):
        raise ValueError(f"noise has {noise.shape[0]} samples but noise_source has {len(noise_source)} seeds")
    sigmas = sigmas_for(config, denoiser)
    counter = CountingDenoiser(denoiser)
    churn = config.churn.for_denoiser(denoiser)  # churn_noise = "model": the release's own stream
    with torch.no_grad():  # sampling never needs gradients; networks would otherwise build graphs
        x = run_solver(config.info, counter, noise, sigmas, config.convention, noise_source=noise_source,
                       class_labels=class_labels, churn=churn, callback=callback,
                       **solver_params(config, denoiser))
    if counter.calls != config.nfe:
        raise RuntimeError(f"sampler {config.sampler!r} made {counter.calls} denoiser calls, but its "
                           f"registry formula gives nfe={config.nfe} for num_steps={config.num_steps}")
    return SampleResult(x=x, nfe=counter.calls, sigmas=sigmas)
