"""Teacher distance: how far a deterministic sampler's images are from a high-NFE teacher's, seed by seed.

For a deterministic sampler, image i depends only on seed i, so the images of a cheap configuration and of an
expensive *teacher* (default: Heun, 64 steps, EDM rho = 7, NFE 127) on the same seeds are paired. Per seed:

- ``pixel``: the RMS difference of the uint8 images mapped to [-1, 1] (what is evaluated, after EDM's
  quantisation), sqrt(mean_p (a_p - b_p)^2);
- ``feature``: the Euclidean distance between the extractor's feature vectors of the two images.

Both are per-seed values (``Score.per_seed``), so paired statistics and Optuna's ``WilcoxonPruner`` can work
on them. Teacher images are cached in memory by (model, teacher config, seeds): a study computes them once
per process. The study objective ``teacher_l2`` (pixel distance) is registered by ``edmbench.study``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from edmbench.generate import ImageBatch, generate_images

DEFAULT_TEACHER = {"sampler": "heun", "num_steps": 64}
_CACHE: dict[tuple, tuple[Any, dict[int, Tensor]]] = {}


def _teacher_config(teacher: Any):
    from edmbench.sampling import SamplerConfig

    if isinstance(teacher, SamplerConfig):
        return teacher
    return SamplerConfig.from_dict(dict(teacher or DEFAULT_TEACHER))


def cache_key(model: Any, teacher, seeds: Sequence[int]) -> tuple:
    """(model identity, the teacher config as sorted JSON, the seeds)."""
    config = json.dumps(_teacher_config(teacher).to_dict(), sort_keys=True, default=str)
    return (model if isinstance(model, str) else id(model), config, tuple(int(s) for s in seeds))


def teacher_images(denoiser, seeds: Sequence[int], teacher=None, *, model: str | None = None,
                   batch_size: int = 256, class_policy: str | int | None = None,
                   device: str = "cpu") -> dict[int, Tensor]:
    """seed -> uint8 teacher image ``[C, H, W]``, cached by (``model`` or the denoiser, teacher, seeds).

    The teacher must be deterministic (``s_churn = 0``, a non-ancestral solver)."""
    config = _teacher_config(teacher)
    if config.info.stochastic and config.s_churn > 0 or config.sampler == "euler_ancestral":
        raise ValueError("the teacher must be deterministic (s_churn = 0, not euler_ancestral)")
    key = cache_key(model or denoiser, config, seeds)
    if key not in _CACHE:
        images: dict[int, Tensor] = {}
        for batch in generate_images(denoiser, config, list(seeds), batch_size=batch_size,
                                     class_policy=class_policy, device=device):
            images.update(zip(batch.seeds, batch.images, strict=True))
        _CACHE[key] = (denoiser, images)  # the denoiser is kept so its id is not reused while cached
    return _CACHE[key][1]


def clear_cache() -> None:
    _CACHE.clear()


def pixel_distance(images: Tensor, teacher: Tensor) -> Tensor:
    """Per-image RMS difference of uint8 ``[B, C, H, W]`` images on the [-1, 1] scale (float64 ``[B]``)."""
    if images.shape != teacher.shape:
        raise ValueError(f"image shapes differ: {tuple(images.shape)} vs {tuple(teacher.shape)}")
    diff = (images.to(torch.float64) - teacher.to(torch.float64)) / 127.5
    return diff.flatten(1).pow(2).mean(dim=1).sqrt()


def feature_distance(images: Tensor, teacher: Tensor, extractor: torch.nn.Module) -> Tensor:
    """Per-image Euclidean distance of the extractor's (first) feature vectors (float64 ``[B]``)."""
    with torch.no_grad():
        a = extractor(images)
        b = extractor(teacher)
    a, b = (v[0] if isinstance(v, tuple | list) else v for v in (a, b))
    return (a.to(torch.float64) - b.to(torch.float64)).flatten(1).norm(dim=1)


def summarise(per_seed: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt(n); nan for n < 2)."""
    n = len(per_seed)
    err = float(per_seed.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return float(per_seed.mean()), err


class TeacherMeter:
    """A scoring-pipeline meter: per-seed teacher distance of every image it is shown."""

    def __init__(self, teacher_by_seed: dict[int, Tensor], extractor: torch.nn.Module | None = None) -> None:
        self.teacher_by_seed = teacher_by_seed
        self.extractor = extractor
        self.values: list[float] = []

    def update(self, batch: ImageBatch) -> None:
        teacher = torch.stack([self.teacher_by_seed[int(s)] for s in batch.seeds])
        if self.extractor is None:
            dist = pixel_distance(batch.images, teacher)
        else:
            dist = feature_distance(batch.images, teacher, self.extractor)
        self.values.extend(dist.tolist())

    def result(self):
        from edmbench.metrics.evaluate import Score

        per_seed = np.asarray(self.values, dtype=np.float64)
        value, err = summarise(per_seed)
        return Score(value, err, per_seed)


def teacher_meter(denoiser, config, seeds: Sequence[int], device: str = "cpu", *, teacher=None,
                  extractor: torch.nn.Module | None = None) -> TeacherMeter:
    """The objective's meter factory: teacher images of ``seeds`` (cached), then a fresh meter."""
    if config.info.stochastic and config.s_churn > 0 or config.sampler == "euler_ancestral":
        raise ValueError("teacher distance needs a deterministic sampler (s_churn = 0, not euler_ancestral)")
    policy = "random" if getattr(denoiser, "label_dim", 0) else None  # the study's default class policy
    images = teacher_images(denoiser, seeds, teacher, class_policy=policy, device=device)
    return TeacherMeter(images, extractor)
