"""``--dry-run``: what a study will do (trials, NFE per trial, images, estimated GPU time), computed from the
spec alone: nothing is loaded, generated or downloaded."""

from __future__ import annotations

import dataclasses
from typing import Any

from edmbench.study.record import sampler_config
from edmbench.study.space import active, grid_points, parent_choices
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
            out.append(f"  final re-scoring: best {r.top_k} + {_confirmed_count(spec) - r.top_k} baselines x "
                       f"{len(r.seed_starts)} seed ranges x {r.num_images} images: "
                       f"{self.rescore_evaluations:,} image-NFE (at most)")
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
    from edmbench.sampling.discretizations import MissingKnobsError

    full = active({**spec.fixed, **knobs})
    try:
        return sampler_config(spec.fixed, full).nfe
    except MissingKnobsError as exc:  # searched knobs the NFE does not depend on (knot_k): their low ends
        lows = {p.name: p.low for p in spec.space if p.name in exc.missing}
        if set(lows) != set(exc.missing):
            raise
        return sampler_config(spec.fixed, {**full, **lows}).nfe


def _nfe_corners(spec: StudySpec) -> list[int]:
    """NFE at every reachable parent choice x the ends of ``num_steps`` (NFE is monotone in num_steps)."""
    steps = next((p for p in spec.space if p.name == "num_steps"), None)
    ends = ([{}] if steps is None else [{"num_steps": v} for v in
            (steps.choices if steps.kind == "categorical" else (int(steps.low), int(steps.high)))])
    return [_nfe(spec, {**parents, **end}) for parents in parent_choices(spec.space, spec.fixed)
            for end in ends]


def _confirmed_count(spec: StudySpec) -> int:
    """Settings the held-out confirmation scores at most: the top k and every enqueued baseline."""
    return spec.rescore.top_k + sum(e.baseline for e in spec.enqueue)


def make_plan(spec: StudySpec, n_trials: int | None = None) -> Plan:
    n = spec.metric.num_images
    enqueued = [_nfe(spec, e.params) for e in spec.enqueue]
    if spec.search.sampler == "grid":
        points = list(grid_points(spec.space, spec.fixed, spec.constraints))
        nfes = [_nfe(spec, p) for p in points]
        total = sum(nfes) * n
        n_trials = len(points)
    else:
        n_trials = n_trials or spec.budget.n_trials or len(spec.enqueue)
        nfes = _nfe_corners(spec) + enqueued
        total = max(nfes) * n * n_trials
    rescore = 0
    if spec.rescore is not None:
        rescore = (max(nfes) * spec.rescore.num_images * _confirmed_count(spec)
                   * len(spec.rescore.seed_starts))
    hours = None
    if spec.estimate is not None:
        hours = (total + rescore) * spec.estimate.ms_per_image_evaluation / 1000 / 3600
    return Plan(n_trials, min(nfes), max(nfes), n, total, rescore, hours)
