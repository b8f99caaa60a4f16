"""The FID objective: trial -> sampler knobs -> generated images -> FID at image-count rungs -> Optuna.

Every call into the sampling, generation, metrics and checkpoint packages lives in this module, so the
rest of ``edmbench.study`` depends on them only through it.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import subprocess
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from edmbench.study._sections import resolve_path
from edmbench.study.space import ConstraintViolation, suggest_knobs
from edmbench.study.spec import StudySpec

# ---- validation of names that live in other packages ----------------------------------------------------

def name_problems(spec: StudySpec, *, check_files: bool = True) -> list[str]:
    """Problems with the model, extractor and class policy names (checked before any work)."""
    problems = []
    model = spec.denoiser.model
    if model and check_files and "://" not in model:
        from edmbench.pretrained import read_manifest

        names = list(read_manifest())
        if model not in names and not resolve_path(model).is_file():
            from edmbench.study._checks import close_match

            problems.append(f"[denoiser] model {model!r} is neither a manifest name nor an existing file"
                            f"{close_match(model, names)}; manifest names: {', '.join(names)}")
    from edmbench.metrics.features import extractor_names

    valid = extractor_names()
    if spec.metric.extractor and spec.metric.extractor not in valid:
        from edmbench.study._checks import close_match

        problems.append(f"[metric] extractor {spec.metric.extractor!r} is not registered"
                        f"{close_match(spec.metric.extractor, valid)}; valid: {', '.join(valid)}")
    policy = spec.denoiser.class_policy
    if policy not in ("random", "none") and not (isinstance(policy, int) and not isinstance(policy, bool)):
        problems.append(f"[denoiser] class_policy must be 'random', 'none' or a class index, got {policy!r}")
    return problems


def class_policy(spec: StudySpec) -> str | int | None:
    return None if spec.denoiser.class_policy == "none" else spec.denoiser.class_policy


# ---- provenance ------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def code_version() -> str:
    """``edmbench <version> (git <commit>[+dirty])`` when run from a git checkout."""
    import edmbench

    root = Path(edmbench.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"edmbench {edmbench.__version__} (git {commit}{'+dirty' if dirty else ''})"
    except (OSError, subprocess.SubprocessError):
        return f"edmbench {edmbench.__version__}"


def provenance(spec: StudySpec, device: str) -> dict[str, Any]:
    import torch

    return {"spec_hash": spec.spec_hash[:16], "code_version": code_version(),
            "torch_version": torch.__version__, "threads": torch.get_num_threads(),
            "device": device, "dtype": spec.denoiser.dtype, "host": platform.node(),
            "model": spec.denoiser.model, "extractor": spec.metric.extractor,
            "reference": spec.metric.reference}


# ---- scoring ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Scorer:
    """A loaded denoiser, extractor and reference statistics: scores a SamplerConfig on a seed range."""

    denoiser: Any
    extractor: Any
    reference: Any
    device: str
    batch_size: int
    class_policy: str | int | None

    def score(self, config: Any, seeds: range, rungs: tuple[int, ...], progress: Any = None) -> Iterator[Any]:
        """Yield a RungResult at each rung and at ``len(seeds)`` (the final FID)."""
        from edmbench.generate import generate_images
        from edmbench.metrics.fid import fid_at_rungs

        batches = generate_images(self.denoiser, config, list(seeds), batch_size=self.batch_size,
                                  class_policy=self.class_policy, device=self.device)
        for result in fid_at_rungs(_counted(batches, progress), self.extractor, self.reference,
                                   [*rungs, len(seeds)]):
            if not math.isfinite(result.fid):
                raise FloatingPointError(f"FID is {result.fid} at {result.n} images")
            if progress is not None:
                progress.rung(result.n, result.fid)
            yield result


def _counted(batches: Any, progress: Any) -> Iterator[Any]:
    """Pass batches through, generating each without autograd and reporting the images done."""
    import torch

    done, source = 0, iter(batches)
    while True:
        with torch.no_grad():
            batch = next(source, None)
        if batch is None:
            return
        done += len(batch.seeds)
        if progress is not None:
            progress.images_done(done)
        yield batch


def preflight(spec: StudySpec) -> None:
    """Make every input local before any storage or work is created: the extractor and its weights, the
    reference statistics and the model file (downloaded into the cache if it is a manifest URL)."""
    from edmbench.metrics import features
    from edmbench.pretrained import resolve

    features.check_extractor_available(spec.metric.extractor,
                                       spec.metric.weights and str(resolve_path(spec.metric.weights)))
    _local(spec.metric.reference)
    resolve(_model_source(spec))


def make_scorer(spec: StudySpec, *, device: str = "cpu", batch_size: int = 64) -> Scorer:
    """Load what a study needs; a missing extractor weight file fails here, before any generation."""
    import torch

    from edmbench.metrics import features
    from edmbench.metrics.stats import load_reference
    from edmbench.pretrained import load

    weights = spec.metric.weights and str(resolve_path(spec.metric.weights))
    features.check_extractor_available(spec.metric.extractor, weights)
    reference = load_reference(_local(spec.metric.reference))
    denoiser = load(_model_source(spec), device=device, dtype=getattr(torch, spec.denoiser.dtype))
    extractor = features.get_extractor(spec.metric.extractor, weights, device=device)
    return Scorer(denoiser, extractor, reference, device, batch_size, class_policy(spec))


def _model_source(spec: StudySpec) -> str:
    """A manifest name or URL as given; a relative file path resolved like every spec path."""
    model = spec.denoiser.model
    return model if "://" in model or not resolve_path(model).is_file() else str(resolve_path(model))


def _local(reference: str) -> str:
    if "://" in reference:
        from edmbench.pretrained import fetch

        return str(fetch(reference))
    return str(resolve_path(reference))


# ---- the Optuna objective ---------------------------------------------------------------------------------

def default_sampler() -> str:
    from edmbench.sampling import SamplerConfig

    return SamplerConfig().sampler


def trial_config(trial: Any, spec: StudySpec) -> Any:
    """The SamplerConfig for a trial: fixed knobs plus suggestions; constraints checked."""
    from edmbench.sampling import SamplerConfig

    knobs = suggest_knobs(trial, spec.space, spec.fixed, spec.constraints, default_sampler())
    return SamplerConfig.from_dict(knobs)


class FIDObjective:
    """Optuna objective: FID (and NFE) of one trial, reported at each rung for pruning."""

    def __init__(self, spec: StudySpec, scorer: Scorer) -> None:
        self.spec, self.scorer = spec, scorer
        self.provenance = provenance(spec, scorer.device)

    def __call__(self, trial: Any, progress: Any = None) -> float | tuple[float, float]:
        import optuna

        spec, start = self.spec, time.perf_counter()
        try:
            config = trial_config(trial, spec)
        except ConstraintViolation as exc:  # no work done; the sampler learns to avoid the region
            trial.set_user_attr("pruned_reason", str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        trial.set_user_attr("nfe", config.nfe)
        trial.set_user_attr("provenance", {"seeds": f"{spec.seeds.start}-{spec.seeds.stop - 1}",
                                           **self.provenance})
        result = None
        for result in self.scorer.score(config, spec.seeds, spec.metric.rungs, progress):
            if result.n < spec.metric.num_images and not spec.multi_objective:
                trial.report(result.fid, result.n)
                if trial.should_prune():
                    self._record(trial, result, start, pruned_reason=f"FID {result.fid:.4g} at {result.n} "
                                 "images is worse than the pruner's threshold")
                    raise optuna.TrialPruned()
        self._record(trial, result, start)
        return (result.fid, float(config.nfe)) if spec.multi_objective else result.fid

    @staticmethod
    def _record(trial: Any, result: Any, start: float, **extra: Any) -> None:
        """The latest rung's FID, its error bar, its image count and the time so far (one write)."""
        trial.set_user_attr("result", {"fid": float(result.fid), "fid_err": _finite_or_none(result.fid_err),
                                       "n_images": int(result.n),
                                       "wall_time_s": round(time.perf_counter() - start, 3), **extra})


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def make_evaluator(spec: StudySpec, *, device: str = "cpu", batch_size: int = 64,
                   worker_id: int = 0) -> FIDObjective:
    """The default evaluator factory used by the runner (one per worker process)."""
    return FIDObjective(spec, make_scorer(spec, device=device, batch_size=batch_size))
