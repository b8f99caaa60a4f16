"""Sampling: schedules, per-image noise, churn, solvers and the sampler registry (EDM Sec. 3-4)."""

from edmbench.sampling.api import SampleResult, sample, sigmas_for, solver_params
from edmbench.sampling.churn import Churn, churn_step
from edmbench.sampling.config import SamplerConfig
from edmbench.sampling.noise import NoiseSource
from edmbench.sampling.registry import SamplerInfo, get_sampler, sampler_names
from edmbench.sampling.schedules import (
    DISCRETIZATIONS,
    SCALINGS,
    SCHEDULES,
    Scaling,
    Schedule,
    make_sigmas,
    noise_levels,
    resolve_range,
)

__all__ = [
    "DISCRETIZATIONS", "SCALINGS", "SCHEDULES",
    "Churn", "NoiseSource", "SampleResult", "SamplerConfig", "SamplerInfo", "Scaling", "Schedule",
    "churn_step", "get_sampler", "make_sigmas", "noise_levels", "resolve_range", "sample", "sampler_names",
    "sigmas_for", "solver_params",
]
