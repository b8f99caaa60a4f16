"""End-point and first-step conventions, explicit, with the NFE each one costs.

Papers count NFE differently for the same solver; a number means nothing without its convention:

- ``endpoint = "zero"`` (EDM): ``num_steps`` noise levels then 0; the step to 0 is a plain Euler step, i.e.
  a final denoise x_N = D(x; sigma_{N-1}). Heun: 2N - 1 evaluations (the registry formula ``nfe(N)``).
- ``endpoint = "sigma_min"`` (diff-sampler, GITS, LD3, DPM-Solver): ``num_steps + 1`` levels from sigma_max
  down to sigma_min, every step a full step of the method, and the output is x at sigma_min (no final
  denoise). The last step to 0 costs ``nfe(1)`` and every other step what a full step costs, so N full
  steps cost ``nfe(N + 1) - nfe(1)`` (Heun: 2N, Euler/multistep: N). UniPC is the exception: its
  corrector evaluates at every non-zero level it reaches, the last one included, so it costs N + 1
  (``FULL_STEP_EXTRA``; the reference UniPC skips that last correction to save the call).
- ``endpoint = "sigma_min_denoise"``: as ``sigma_min``, then one extra D(x; sigma_min): + 1.
- ``afs = True``: the analytic first step (Dockhorn et al. 2022, GENIE; Zhou et al. 2024, AMED) replaces
  the first network call, made at sigma_max where the data are buried in noise, by the denoiser of
  Gaussian data N(0, sigma_data^2 I): D(x; sigma) = sigma_data^2 / (sigma^2 + sigma_data^2) x. Saves
  exactly one call.

Every registered solver evaluates the network strictly in sequence, so the number of sequential network
rounds equals the NFE (a parallel-evaluation solver would declare fewer).

Published points (``[[published]]`` in a spec) carry a :class:`PointConvention` (how the source counted);
:func:`to_axis` puts one on edmbench's single plotted axis, network calls per image, exactly where the count
is certain and flagged (with a note) where it is not.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from edmbench._lazy import lazy_module
from edmbench.registry import check_name
from edmbench.sampling.registry import SamplerInfo, get_sampler

if TYPE_CHECKING:
    from torch import Tensor

    from edmbench.denoisers.base import CountingDenoiser, Denoiser

torch = lazy_module("torch")  # imported on first use: this module's metadata is read without torch

ENDPOINTS = ("zero", "sigma_min", "sigma_min_denoise")
# Calls a solver makes beyond nfe(N + 1) - nfe(1) when its last step ends above 0 (see the docstring).
FULL_STEP_EXTRA = {"unipc": 1}
DEFAULT_SIGMA_DATA = 0.5  # EDM's sigma_data, used by AFS when the denoiser does not declare its own


@dataclasses.dataclass(frozen=True)
class Convention:
    """How a schedule ends (``endpoint``) and whether the first call is analytic (``afs``)."""

    endpoint: str = "zero"
    afs: bool = False

    def __post_init__(self) -> None:
        check_name("endpoint", self.endpoint, ENDPOINTS)
        if not isinstance(self.afs, bool):
            raise ValueError(f"afs must be true or false, got {self.afs!r}")

    def num_levels(self, num_steps: int) -> int:
        """Non-zero noise levels a ``num_steps`` run needs (sigma_max .. sigma_min)."""
        return num_steps if self.endpoint == "zero" else num_steps + 1

    def sigmas(self, levels: Tensor) -> Tensor:
        """The solver's ``sigmas``: ``levels`` then 0 (``zero``), or ``levels`` as they are."""
        levels = levels.to(torch.float64)
        return torch.cat([levels, levels.new_zeros(1)]) if self.endpoint == "zero" else levels

    def nfe(self, info: SamplerInfo, num_steps: int) -> int:
        """Network calls per sample (see the module docstring for each term)."""
        if self.endpoint == "zero":
            full = info.nfe(num_steps)
        else:
            full = info.nfe(num_steps + 1) - info.nfe(1) + FULL_STEP_EXTRA.get(info.name, 0)
        return full + (self.endpoint == "sigma_min_denoise") - self.afs

    def network_rounds(self, info: SamplerInfo, num_steps: int) -> int:
        """Sequential network rounds per sample: every registered solver is sequential, so = ``nfe``."""
        return self.nfe(info, num_steps)

    @property
    def label(self) -> str:
        return f"{self.endpoint}{', AFS' if self.afs else ''}"


EDM = Convention("zero", False)


# --- published points: how a source counted its NFE, and the one axis edmbench plots on -------------------

COUNTS = ("calls", "steps")      # a source's NFE is network calls made, or its solver's step count
AFS_UNVERIFIED = "unverified"    # TOML spelling of afs = None (the source's use of AFS is not verified)
AXIS_LABEL = "NFE (network calls per image, counted)"


@dataclasses.dataclass(frozen=True)
class PointConvention:
    """How a published number's NFE was counted: the schedule's ``endpoint``, whether the first step was
    analytic (``afs``; None = not verified), and whether ``nfe`` counts network ``calls`` or solver
    ``steps`` (then ``sampler``, a registry name, gives the calls per step)."""

    endpoint: str
    afs: bool | None = False
    counts: str = "calls"
    sampler: str | None = None

    def __post_init__(self) -> None:
        check_name("endpoint", self.endpoint, ENDPOINTS)
        check_name("counts", self.counts, COUNTS)
        if self.afs is not None and not isinstance(self.afs, bool):
            raise ValueError(f"afs must be true, false or {AFS_UNVERIFIED!r}, got {self.afs!r}")
        if self.sampler is not None:
            get_sampler(self.sampler)  # unknown names fail with the valid ones
        if self.counts == "steps" and self.sampler is None:
            raise ValueError("counts = 'steps' needs the sampler (its calls per step convert steps to NFE)")

    @classmethod
    def from_dict(cls, table: dict) -> PointConvention:
        """From a spec's ``convention = {endpoint, afs, counts, sampler}`` (afs may be "unverified")."""
        unknown = sorted(set(table) - {"endpoint", "afs", "counts", "sampler"})
        if unknown:
            raise ValueError(f"unknown convention keys {unknown}; valid: endpoint, afs, counts, sampler")
        if "endpoint" not in table:
            raise ValueError(f"convention needs an endpoint ({', '.join(ENDPOINTS)})")
        afs = table.get("afs", False)
        return cls(table["endpoint"], None if afs == AFS_UNVERIFIED else afs, table.get("counts", "calls"),
                   table.get("sampler"))

    @property
    def label(self) -> str:
        afs = {True: "AFS", False: "no AFS", None: "AFS unverified"}[self.afs]
        return f"{self.endpoint}, {afs}, NFE counts {self.counts}"


@dataclasses.dataclass(frozen=True)
class AxisPoint:
    """A published point on edmbench's axis (network calls per image): ``nfe``; ``exact`` when that count is
    certain; ``note`` says what is uncertain and how the point's convention differs from the axis's runs."""

    nfe: float
    exact: bool
    note: str = ""


def _differences(point: PointConvention, axis: Convention) -> list[str]:
    out = []
    if point.endpoint != axis.endpoint:
        out.append(f"schedule ends {point.endpoint} (the runs: {axis.endpoint})")
    if point.afs is True and not axis.afs:
        out.append("first step analytic (AFS): one more step than calls")
    if point.afs is False and axis.afs:
        out.append("no AFS (the runs use it)")
    return out


def to_axis(nfe: int, convention: PointConvention | None, axis: Convention = EDM) -> AxisPoint:
    """Put a published ``nfe`` on the axis of network calls per image actually made.

    Exact when the source counted calls and its AFS use is known (calls are calls, whatever the schedule),
    or counted steps of a known solver with known AFS (``Convention.nfe``). Flagged (``exact = False``) when
    the convention is not stated, or AFS is unverified: a source that counts the analytic first step as an
    evaluation made one call fewer than it reports (for counted steps: one fewer than the formula)."""
    if convention is None:
        return AxisPoint(float(nfe), False, "NFE convention not stated")
    notes = _differences(convention, axis)
    if convention.counts == "steps":
        info = get_sampler(convention.sampler)
        calls = Convention(convention.endpoint, bool(convention.afs)).nfe(info, nfe)
        notes.insert(0, f"{nfe} {convention.sampler} steps under {convention.endpoint}")
    else:
        calls = nfe
    if convention.afs is None:
        notes.append(f"AFS use unverified: {calls} or {calls - 1} calls")
        return AxisPoint(float(calls), False, "; ".join(notes))
    return AxisPoint(float(calls), True, "; ".join(notes))


class AnalyticFirstStep:
    """Wraps a Denoiser: the first call returns sigma_data^2 / (sigma^2 + sigma_data^2) x, the others pass
    through. ``sigma_data`` defaults to the denoiser's own (EDM preconditioners declare it)."""

    def __init__(self, inner: Denoiser, sigma_data: float | None = None) -> None:
        self.inner = inner
        self.sigma_data = float(sigma_data or getattr(inner, "sigma_data", None) or DEFAULT_SIGMA_DATA)
        self.used = False

    def __call__(self, x: Tensor, sigma: Tensor | float, class_labels: Tensor | None = None) -> Tensor:
        if self.used:
            return self.inner(x, sigma, class_labels)
        self.used = True
        s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1, *([1] * (x.ndim - 1)))
        gain = self.sigma_data**2 / (s * s + self.sigma_data**2)
        return (gain * x.to(torch.float64)).to(torch.float32)

    def round_sigma(self, sigma: Tensor | float) -> Tensor:
        return self.inner.round_sigma(sigma)

    def __getattr__(self, name: str):  # sigma_min, sigma_max, image_shape, label_dim of the inner denoiser
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """``x``: float64 samples; ``nfe``: counted network calls per sample; ``sigmas``: what the solver got."""

    x: Tensor
    nfe: int
    sigmas: Tensor
    network_rounds: int


def run_solver(info: SamplerInfo, counter: CountingDenoiser, noise: Tensor, sigmas: Tensor,
               convention: Convention, **kwargs) -> Tensor:
    """``info.fn`` on ``sigmas`` under ``convention``: AFS replaces the first call of ``counter``, and
    ``sigma_min_denoise`` adds D(x; sigma_min). ``kwargs`` go to the solver (noise_source, churn, ...)."""
    net: Denoiser = AnalyticFirstStep(counter) if convention.afs else counter
    x = info.fn(net, noise, sigmas, **kwargs)
    if convention.endpoint == "sigma_min_denoise":
        from edmbench.sampling.ode import denoise

        x = denoise(net, x, float(sigmas[-1]), kwargs.get("class_labels"))
    return x


def check_count(info: SamplerInfo, convention: Convention, num_steps: int, calls: int) -> None:
    """Raise if the counted calls differ from the convention's formula (a wrong formula is a bug)."""
    expected = convention.nfe(info, num_steps)
    if calls != expected:
        raise RuntimeError(f"sampler {info.name!r} made {calls} network calls under {convention.label}, "
                           f"but the convention's formula gives nfe={expected} for num_steps={num_steps}")


def sample_levels(denoiser: Denoiser, sampler: str, levels: Tensor, noise: Tensor, *, noise_source,
                  convention: Convention = EDM, class_labels: Tensor | None = None,
                  **solver_params) -> RunResult:
    """Run ``sampler`` (deterministic use: no churn) on explicit noise ``levels`` (sigma_max .. sigma_min,
    ``convention.num_levels(N)`` of them) under ``convention``; the counted calls must equal the formula."""
    info = get_sampler(sampler)
    num_steps = len(levels) if convention.endpoint == "zero" else len(levels) - 1
    if num_steps < 1:
        raise ValueError(f"{len(levels)} levels make no step under endpoint {convention.endpoint!r}")
    sigmas = convention.sigmas(torch.as_tensor(levels, dtype=torch.float64))
    from edmbench.denoisers.base import CountingDenoiser

    counter = CountingDenoiser(denoiser)
    with torch.no_grad():
        x = run_solver(info, counter, noise, sigmas, convention, noise_source=noise_source,
                       class_labels=class_labels, **solver_params)
    check_count(info, convention, num_steps, counter.calls)
    return RunResult(x=x, nfe=counter.calls, sigmas=sigmas,
                     network_rounds=convention.network_rounds(info, num_steps))
