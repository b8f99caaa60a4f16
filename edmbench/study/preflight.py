"""Checks a study runs before any storage or output file exists: a spec that cannot work is refused here,
with every problem on one line, instead of failing every trial after ``study.db`` was created.

- :func:`plan_problems` (no file read): rungs (at least 2 images each: a covariance needs two; increasing;
  at most ``num_images``), and the plan's size: ``num_images`` and every ``num_steps`` the spec can ask for
  are capped (``EDMBENCH_MAX_NUM_IMAGES``, ``EDMBENCH_MAX_NUM_STEPS`` raise the caps).
- :func:`input_problems`: the denoiser file loads (through ``edmbench.load``'s validating readers; nothing is
  generated), its class count admits ``class_policy``, the reference statistics load, and their feature
  dimension equals the extractor's (measured on two blank images of the model's shape).
"""

from __future__ import annotations

import os
from typing import Any

from edmbench.study._checks import SpecError
from edmbench.study.spec import StudySpec

MAX_NUM_IMAGES = ("EDMBENCH_MAX_NUM_IMAGES", 10_000_000)  # 10x the largest published FID sample (1M)
MAX_NUM_STEPS = ("EDMBENCH_MAX_NUM_STEPS", 10_000)        # 10x iDDPM's 1000-step table


def _limit(rule: tuple[str, int]) -> int:
    name, default = rule
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _num_steps_asked(spec: StudySpec) -> list[tuple[str, Any]]:
    """Every ``num_steps`` value the spec can run: [fixed], the [space] range or choices, [[enqueue]]."""
    out = []
    if "num_steps" in spec.fixed:
        out.append(("[fixed] num_steps", spec.fixed["num_steps"]))
    for param in (p for p in spec.space if p.name == "num_steps"):
        out += [("[space.num_steps] high", param.high)] if param.high is not None else []
        out += [("[space.num_steps] choices", v) for v in param.choices]
    out += [(f"[[enqueue]] {item.label!r} num_steps", item.params["num_steps"]) for item in spec.enqueue
            if "num_steps" in item.params]
    return out


def plan_problems(spec: StudySpec) -> list[str]:
    """Problems of the plan itself (rungs, sizes); reads no file."""
    problems = []
    m = spec.metric
    tiny = [r for r in m.rungs if r < 2]
    if tiny:
        problems.append(f"[metric] rungs {tiny} are below 2 images: an FID needs a covariance, i.e. at "
                        "least 2 images per rung")
    if list(m.rungs) != sorted(set(m.rungs)):
        problems.append(f"[metric] rungs must be strictly increasing, got {list(m.rungs)}")
    if any(r > m.num_images for r in m.rungs):
        problems.append(f"[metric] rungs {list(m.rungs)} must be at most num_images = {m.num_images}")
    if m.num_images < 2:
        problems.append(f"[metric] num_images = {m.num_images} must be at least 2")
    cap = _limit(MAX_NUM_IMAGES)
    if m.num_images > cap:
        problems.append(f"[metric] num_images = {m.num_images} exceeds the limit of {cap} images per trial "
                        f"(set {MAX_NUM_IMAGES[0]} to raise it)")
    cap = _limit(MAX_NUM_STEPS)
    for where, value in _num_steps_asked(spec):
        if isinstance(value, int | float) and not isinstance(value, bool) and value > cap:
            problems.append(f"{where} = {value:g} exceeds the limit of {cap} steps (set {MAX_NUM_STEPS[0]} "
                            "to raise it)")
    return problems


def input_problems(spec: StudySpec) -> list[str]:
    """Problems with the input files: the model, its class count, the reference and its dimension."""
    problems: list[str] = []
    denoiser = _load_model(spec, problems)
    if denoiser is not None:
        problems += _class_problems(spec, denoiser)
    reference = _load_reference(spec, problems)
    if denoiser is not None and reference is not None:
        dim = _feature_dim(spec, denoiser, problems)
        if dim is not None and reference.mu.shape[-1] != dim:
            problems.append(f"[metric] reference {spec.metric.reference!r} holds {reference.mu.shape[-1]}-d "
                            f"statistics, but extractor {spec.metric.extractor!r} gives {dim}-d features")
    return problems


def _load_model(spec: StudySpec, problems: list[str]) -> Any:
    from edmbench.pretrained import load
    from edmbench.study.objective import _model_source

    try:
        return load(_model_source(spec))
    except Exception as exc:  # every reader refusal is one line naming the file and the rule
        problems.append(f"[denoiser] model {spec.denoiser.model!r} cannot be loaded: {_line(exc)}")
        return None


def _class_problems(spec: StudySpec, denoiser: Any) -> list[str]:
    policy, labels = spec.denoiser.class_policy, int(getattr(denoiser, "label_dim", 0) or 0)
    if isinstance(policy, int) and not isinstance(policy, bool):
        if labels == 0:
            return [f"[denoiser] class_policy = {policy} needs a class-conditional model; "
                    f"{spec.denoiser.model!r} is unconditional (use class_policy = \"none\")"]
        if not 0 <= policy < labels:
            return [f"[denoiser] class_policy = {policy} is not a class of {spec.denoiser.model!r}: valid "
                    f"0..{labels - 1}, 'random' or 'none'"]
    return []


def _load_reference(spec: StudySpec, problems: list[str]) -> Any:
    from edmbench.metrics.stats import load_reference
    from edmbench.study.objective import _local

    try:
        return load_reference(_local(spec.metric.reference))
    except Exception as exc:
        problems.append(f"[metric] reference {spec.metric.reference!r} cannot be read: {_line(exc)}")
        return None


def _feature_dim(spec: StudySpec, denoiser: Any, problems: list[str]) -> int | None:
    import torch

    from edmbench.metrics import features
    from edmbench.study._sections import resolve_path

    try:
        weights = spec.metric.weights and str(resolve_path(spec.metric.weights))
        extractor = features.get_extractor(spec.metric.extractor, weights)
        shape = (2, *(int(n) for n in denoiser.image_shape))
        return int(features.extract_features(extractor, torch.zeros(shape, dtype=torch.uint8)).shape[-1])
    except Exception as exc:
        problems.append(f"[metric] extractor {spec.metric.extractor!r} cannot run: {_line(exc)}")
        return None


def _line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


def preflight(spec: StudySpec, *, inputs: bool = True) -> None:
    """Raise ``SpecError`` listing every problem; call before any storage or output exists."""
    problems = plan_problems(spec) + (input_problems(spec) if inputs else [])
    if problems:
        raise SpecError(problems, spec.path or "spec")
