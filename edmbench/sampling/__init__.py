"""Sampling: schedules, per-image noise, churn, solvers and the sampler registry (EDM Sec. 3-4).

Importing the package reads the registries' metadata only (names, NFE formulas, knobs, defaults): spec
validation and ``--dry-run`` need no torch. ``sample`` and the noise source load torch on first access,
and each registered solver is imported when it is first run (``SamplerInfo.fn``).
"""

from edmbench._lazy import lazy_getattr
from edmbench.sampling import lownfe as _lownfe  # noqa: F401 -- registers logsnr, time_uniform, polynomial, knots
from edmbench.sampling.churn import CHURN_NOISE, Churn, churn_step
from edmbench.sampling.config import SamplerConfig, ignored_knobs, knobs_read, with_denoiser_defaults
from edmbench.sampling.discretizations import DISCRETIZATIONS, make_sigmas, noise_levels, resolve_range
from edmbench.sampling.knobs import KNOBS, PARENT_KNOBS, Knob
from edmbench.sampling.registry import SAMPLERS, SamplerInfo, get_sampler, sampler_names
from edmbench.sampling.schedules import SCALINGS, SCHEDULES, Scaling, Schedule

# names whose modules import torch at module level: resolved on first access
_LAZY = {name: "edmbench.sampling.api" for name in ("SampleResult", "sample", "sigmas_for", "solver_params")}
_LAZY["NoiseSource"] = "edmbench.sampling.noise"

__all__ = [
    "CHURN_NOISE", "DISCRETIZATIONS", "KNOBS", "PARENT_KNOBS", "SAMPLERS", "SCALINGS", "SCHEDULES",
    "Churn", "Knob", "NoiseSource", "SampleResult", "SamplerConfig", "SamplerInfo", "Scaling", "Schedule",
    "churn_step", "get_sampler", "ignored_knobs", "knobs_read", "make_sigmas", "noise_levels",
    "resolve_range", "sample", "sampler_names", "sigmas_for", "solver_params", "with_denoiser_defaults",
]

__getattr__ = lazy_getattr(__name__, _LAZY)
