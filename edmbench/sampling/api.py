"""``sample``: the one entry point that turns a SamplerConfig and unit-variance noise into samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from edmbench.denoisers.base import CountingDenoiser, Denoiser
from edmbench.sampling.config import SamplerConfig
from edmbench.sampling.noise import NoiseSource
from edmbench.sampling.ode import Callback
from edmbench.sampling.schedules import Scaling, Schedule, make_sigmas, resolve_range, vp_betas


@dataclass(frozen=True)
class SampleResult:
    """``x``: float64 samples ``[B, C, H, W]``; ``nfe``: counted evaluations per sample; ``sigmas``: the
    float64 schedule actually used (clamped, rounded, ending in 0)."""

    x: Tensor
    nfe: int
    sigmas: Tensor


def _range(config: SamplerConfig, denoiser: Denoiser | None) -> tuple[float, float]:
    lo, hi = (0.0, float("inf")) if denoiser is None else (denoiser.sigma_min, denoiser.sigma_max)
    return resolve_range(config.discretization, config.sigma_min, config.sigma_max, lo, hi)


def sigmas_for(config: SamplerConfig, denoiser: Denoiser | None = None) -> Tensor:
    """The float64 ``[num_steps + 1]`` noise levels of ``config``, clamped to and rounded by ``denoiser``."""
    sigma_min, sigma_max = _range(config, denoiser)
    return make_sigmas(config.discretization, config.num_steps, sigma_min, sigma_max, rho=config.rho,
                       epsilon_s=config.epsilon_s,
                       round_sigma=None if denoiser is None else denoiser.round_sigma)


def solver_params(config: SamplerConfig, denoiser: Denoiser | None = None) -> dict[str, Any]:
    """The keyword arguments ``config`` passes to its registered solver function (beyond the common ones)."""
    params: dict[str, Any] = {}
    for name in config.info.params:
        if name == "schedule" and config.schedule == "vp":
            params[name] = Schedule("vp", *vp_betas(*_range(config, denoiser), config.epsilon_s))
        elif name == "schedule":
            params[name] = Schedule(config.schedule)
        elif name == "scaling":
            params[name] = Scaling(config.scaling)
        elif name == "order":
            if config.order is not None:  # None: the solver's own default order
                params[name] = config.order
        else:
            params[name] = getattr(config, name)
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
    with torch.no_grad():  # sampling never needs gradients; networks would otherwise build graphs
        x = config.info.fn(counter, noise, sigmas, noise_source=noise_source, class_labels=class_labels,
                           churn=config.churn, callback=callback, **solver_params(config, denoiser))
    if counter.calls != config.nfe:
        raise RuntimeError(f"sampler {config.sampler!r} made {counter.calls} denoiser calls, but its "
                           f"registry formula gives nfe={config.nfe} for num_steps={config.num_steps}")
    return SampleResult(x=x, nfe=counter.calls, sigmas=sigmas)
