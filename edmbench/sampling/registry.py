"""The sampler registry: each solver with its metadata, so NFE formulas are written exactly once.

Every registered ``fn`` has the uniform signature
``fn(denoiser, noise, sigmas, *, noise_source, class_labels=None, churn=Churn(), callback=None,
**solver_params) -> x`` where ``sigmas`` is float64 ``[N + 1]`` ending in 0 and ``x`` is float64.
NFE convention (EDM): the final step goes to sigma = 0 and is a plain Euler step (= a final denoise).
The built-in entries name their function as ``"module:function"`` (imported on first use of ``fn``), so the
metadata (names, NFE formulas, knobs) is read without importing torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edmbench._lazy import resolve
from edmbench.registry import Registry
from edmbench.sampling.churn import CHURN_KNOBS

UNIPC_ORDERS = (1, 2, 3)  # UniPC-p predictor orders implemented in edmbench.sampling.unipc


@dataclass(frozen=True)
class SamplerInfo:
    """A registered solver.

    ``order``: convergence order of the deterministic solver; ``nfe(num_steps)``: denoiser evaluations
    per sample; ``stochastic``: can inject noise; ``churn``: accepts EDM's churn knobs
    (s_churn, s_tmin, s_tmax, s_noise, churn_noise); ``params``: the other SamplerConfig knobs it reads,
    passed to ``fn`` by name (``schedule``/``scaling`` as built objects; a None value is not passed, so
    the solver's own default applies); ``orders``: the valid values of its ``order`` knob (``order``
    above is for the solver's default).
    """

    name: str
    target: Callable | str  # the solver function, or "package.module:function" imported on first use
    order: int
    nfe: Callable[[int], int]
    stochastic: bool
    churn: bool
    params: tuple[str, ...]
    description: str
    orders: tuple[int, ...] = ()

    @property
    def fn(self) -> Callable:
        """The solver function (``target``, imported the first time it is asked for)."""
        return resolve(self.target)

    @property
    def knobs(self) -> tuple[str, ...]:
        """Every SamplerConfig knob this sampler reads (its params, then the churn knobs if it churns)."""
        return self.params + (CHURN_KNOBS if self.churn else ())


def _n(num_steps: int) -> int:
    return num_steps


def _two_n_minus_one(num_steps: int) -> int:
    return 2 * num_steps - 1


_S = "edmbench.sampling."
SAMPLERS: Registry[SamplerInfo] = Registry("sampler")
for _info in (
    SamplerInfo("euler", _S + "ode:euler", 1, _n, True, True, ("schedule", "scaling"),
                "Euler on the sigma(t)/s(t) ODE, optional EDM churn (EDM Alg. 1/2)"),
    SamplerInfo("heun", _S + "ode:heun", 2, _two_n_minus_one, True, True, ("schedule", "scaling", "alpha"),
                "EDM's 2nd-order sampler (alpha=1 Heun), last step Euler, optional churn (EDM Alg. 1/2)"),
    SamplerInfo("dpm_2", _S + "solvers:dpm_2", 2, _two_n_minus_one, True, True, (),
                "DPM-Solver-2: midpoint in log-sigma, last step Euler, optional churn (Lu et al. 2022)"),
    SamplerInfo("dpmpp_2m", _S + "solvers:dpmpp_2m", 2, _n, False, False, (),
                "DPM-Solver++(2M): 2nd-order multistep in data prediction (Lu et al. 2022b)"),
    SamplerInfo("ipndm", _S + "solvers:ipndm", 4, _n, False, False, ("order",),
                "iPNDM: fixed Adams-Bashforth weights up to 4th order, lower-order start (Zhang & Chen)",
                orders=(1, 2, 3, 4)),
    SamplerInfo("ipndm_v", _S + "solvers:ipndm_v", 4, _n, False, False, ("order",),
                "iPNDM with variable-step Adams-Bashforth weights (order up to 4 on any grid)",
                orders=(1, 2, 3, 4)),
    SamplerInfo("unipc", _S + "unipc:unipc", 3, _n, False, False, ("order",),
                "UniPC-p (B2): order-p multistep predictor, free corrector, order p + 1 (default p = 2)",
                orders=UNIPC_ORDERS),
    SamplerInfo("euler_ancestral", _S + "solvers:euler_ancestral", 1, _n, True, False, ("eta",),
                "Euler-ancestral: Euler to sigma_down, then fresh noise up to sigma_next (eta scales it)"),
):
    SAMPLERS.register(_info.name, _info)


def sampler_names() -> tuple[str, ...]:
    """Registered sampler names, sorted."""
    return SAMPLERS.names()


def get_sampler(name: str) -> SamplerInfo:
    """The registry entry for ``name``; unknown names raise ValueError listing the valid ones."""
    return SAMPLERS.get(name)
