"""Teacher distance: closed forms, per-seed pairing, one teacher run per (model, teacher, seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edmbench.denoisers.base import CountingDenoiser
from edmbench.generate import ImageBatch
from edmbench.metrics import teacher as T
from edmbench.sampling import SamplerConfig


@pytest.fixture(autouse=True)
def _fresh_cache():
    T.clear_cache()
    yield
    T.clear_cache()


def test_pixel_distance_closed_form():
    a = torch.full((2, 1, 2, 2), 100, dtype=torch.uint8)
    b = a.clone()
    b[1] += 3  # every pixel 3 grey levels apart: RMS 3 / 127.5 on the [-1, 1] scale
    torch.testing.assert_close(T.pixel_distance(a, b), torch.tensor([0.0, 3 / 127.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="image shapes differ"):
        T.pixel_distance(a, b[:, :, :1])


def test_teacher_is_computed_once_and_is_at_distance_zero_from_itself(gmm):
    counted = CountingDenoiser(gmm)
    teacher = {"sampler": "heun", "num_steps": 8}
    seeds = list(range(5))
    first = T.teacher_images(counted, seeds, teacher)
    calls = counted.calls
    assert calls == 15 and sorted(first) == seeds  # Heun, 8 steps: 2 * 8 - 1 calls (one batch)
    again = T.teacher_meter(counted, SamplerConfig(sampler="heun", num_steps=8), seeds, teacher=teacher)
    assert counted.calls == calls  # cached: no new call
    batch = ImageBatch(seeds=seeds, images=torch.stack([first[s] for s in seeds]), class_labels=None, nfe=15)
    again.update(batch)
    score = again.result()
    assert score.value == 0 and np.array_equal(score.per_seed, np.zeros(5))


def test_meter_pairs_by_seed_and_reports_per_seed_values(gmm):
    seeds = [3, 1, 2]
    teacher = T.teacher_images(gmm, seeds, {"sampler": "heun", "num_steps": 8})
    meter = T.TeacherMeter(teacher)
    shifted = torch.stack([teacher[s] for s in seeds]).to(torch.int16)
    shifted[1] = torch.where(shifted[1] >= 2, shifted[1] - 2, shifted[1] + 2)  # seed 1: every pixel 2 levels
    meter.update(ImageBatch(seeds=seeds, images=shifted.to(torch.uint8), class_labels=None, nfe=1))
    score = meter.result()
    assert score.per_seed[0] == 0 and score.per_seed[2] == 0 and score.per_seed[1] == pytest.approx(2 / 127.5)
    assert score.value == pytest.approx(score.per_seed.mean())
    assert score.err == pytest.approx(score.per_seed.std(ddof=1) / math.sqrt(3))


def test_stochastic_configs_are_refused(gmm):
    with pytest.raises(ValueError, match="deterministic"):
        T.teacher_meter(gmm, SamplerConfig(sampler="heun", num_steps=4, s_churn=1.0), [0])
    with pytest.raises(ValueError, match="must be deterministic"):
        T.teacher_images(gmm, [0], {"sampler": "euler_ancestral", "num_steps": 4})


def test_teacher_l2_is_a_registered_per_seed_objective():
    from edmbench.study.objectives import get_objective

    objective = get_objective("teacher_l2")
    assert objective.per_seed and objective.meter is not None and objective.direction == "minimize"
