"""``--dry-run``: what a study will do (trials, NFE per trial, images, estimated GPU time), computed from the
spec alone: nothing is loaded, generated or downloaded."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from edmbench.study.space import grid_points, knob_active
from edmbench.study.spec import StudySpec


@dataclasses.dataclass(frozen=True)
class Plan:
    n_trials: int
    nfe_min: int
    nfe_max: int
    images_per_trial: int
    image_evaluations: int          # upper bound: every trial runs to num_images (no pruning)
    rescore_evaluations: int
    gpu_hours: float | None

    def lines(self, spec: StudySpec) -> list[str]:
        out = [f"study {spec.name!r}: {spec.description.strip().splitlines()[0] if spec.description else ''}",
               f"  objectives: {', '.join(spec.objectives)}; search: {spec.search.sampler} (seed "
               f"{spec.search.seed}); pruner: {spec.pruner.type if spec.metric.rungs else 'none'}",
               f"  model: {spec.denoiser.model}; extractor: {spec.metric.extractor}; reference: "
               f"{spec.metric.reference}",
               f"  trials: {self.n_trials}; NFE per trial: {self.nfe_min}..{self.nfe_max}; images per trial: "
               f"{self.images_per_trial} (seeds {spec.seeds.start}-{spec.seeds.stop - 1}, rungs "
               f"{list(spec.metric.rungs)})",
               f"  fixed: {spec.fixed}",
               *(f"  search {p.name}: {_describe(p)}" for p in spec.space),
               *(f"  enqueued first: {e.label} {e.params}" for e in spec.enqueue),
               f"  network evaluations (upper bound, no pruning): {self.image_evaluations:,} image-NFE"]
        if self.rescore_evaluations:
            r = spec.rescore
            out.append(f"  final re-scoring: best {r.top_k} x {len(r.seed_starts)} seed ranges x "
                       f"{r.num_images} images: {self.rescore_evaluations:,} image-NFE")
        if self.gpu_hours is not None:
            out.append(f"  estimated GPU time: {self.gpu_hours:.1f} h on {spec.estimate.gpu} "
                       f"({spec.estimate.ms_per_image_evaluation} ms per image-NFE)")
        out.extend(f"  published: {p.label}: FID {p.fid} at NFE {p.nfe} ({p.source})" for p in spec.published)
        return out


def _describe(p: Any) -> str:
    if p.kind == "categorical":
        return f"one of {list(p.choices)}"
    extra = (" log" if p.log else "") + (f" step {p.step}" if p.step else "")
    return f"{p.kind} [{p.low}, {p.high}]{extra}"


def _nfe(spec: StudySpec, knobs: dict[str, Any]) -> int:
    from edmbench.sampling import SamplerConfig

    return SamplerConfig.from_dict({**spec.fixed, **knobs}).nfe


def _nfe_corners(spec: StudySpec) -> list[int]:
    """NFE at every combination of sampler choices and num_steps ends (NFE is monotone in num_steps)."""
    by_name = {p.name: p for p in spec.space}
    samplers = by_name["sampler"].choices if "sampler" in by_name else [spec.fixed.get("sampler", "heun")]
    steps = by_name.get("num_steps")
    step_ends = [int(steps.low), int(steps.high)] if steps and steps.kind == "int" else (
        list(steps.choices) if steps else [spec.fixed.get("num_steps", 18)])
    return [_nfe(spec, {"sampler": s, "num_steps": n}) for s, n in itertools.product(samplers, step_ends)]


def make_plan(spec: StudySpec, n_trials: int | None = None) -> Plan:
    n = spec.metric.num_images
    enqueued = [_nfe(spec, e.params) for e in spec.enqueue]
    if spec.search.sampler == "grid":
        points = list(grid_points(spec.space, spec.fixed, spec.constraints))
        nfes = [_nfe(spec, {k: v for k, v in p.items() if knob_active(k, p.get("sampler", "heun"))})
                for p in points]
        total = sum(nfes) * n
        n_trials = len(points)
    else:
        n_trials = n_trials or spec.budget.n_trials or len(spec.enqueue)
        nfes = _nfe_corners(spec) + enqueued
        total = max(nfes) * n * n_trials
    rescore = 0
    if spec.rescore is not None:
        rescore = max(nfes) * spec.rescore.num_images * spec.rescore.top_k * len(spec.rescore.seed_starts)
    hours = None
    if spec.estimate is not None:
        hours = (total + rescore) * spec.estimate.ms_per_image_evaluation / 1000 / 3600
    return Plan(n_trials, min(nfes), max(nfes), n, total, rescore, hours)
