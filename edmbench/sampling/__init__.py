"""Sampling: schedules, per-image noise, churn, solvers and the sampler registry (EDM Sec. 3-4)."""

from edmbench.sampling import lownfe as _lownfe  # noqa: F401 -- registers logsnr, time_uniform, polynomial, knots
from edmbench.sampling.api import SampleResult, sample, sigmas_for, solver_params
from edmbench.sampling.churn import CHURN_NOISE, Churn, churn_step
from edmbench.sampling.config import SamplerConfig, ignored_knobs, knobs_read, with_denoiser_defaults
from edmbench.sampling.discretizations import DISCRETIZATIONS, make_sigmas, noise_levels, resolve_range
from edmbench.sampling.knobs import KNOBS, PARENT_KNOBS, Knob
from edmbench.sampling.noise import NoiseSource
from edmbench.sampling.registry import SAMPLERS, SamplerInfo, get_sampler, sampler_names
from edmbench.sampling.schedules import SCALINGS, SCHEDULES, Scaling, Schedule

__all__ = [
    "CHURN_NOISE", "DISCRETIZATIONS", "KNOBS", "PARENT_KNOBS", "SAMPLERS", "SCALINGS", "SCHEDULES",
    "Churn", "Knob", "NoiseSource", "SampleResult", "SamplerConfig", "SamplerInfo", "Scaling", "Schedule",
    "churn_step", "get_sampler", "ignored_knobs", "knobs_read", "make_sigmas", "noise_levels",
    "resolve_range", "sample", "sampler_names", "sigmas_for", "solver_params", "with_denoiser_defaults",
]
