"""The study objective: trial -> sampler knobs -> images -> the spec's objectives at rungs -> Optuna.

Every call into the sampling, generation, metrics and checkpoint packages lives in this module, so the
rest of ``edmbench.study`` depends on them only through it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

from edmbench.study._sections import resolve_path
from edmbench.study.objectives import get_objective, needs_kid
from edmbench.study.record import TrialRecord, sampler_config, write_rung_evidence
from edmbench.study.space import ConstraintViolation, suggest_knobs
from edmbench.study.spec import DEFAULT_OBJECTIVE, StudySpec


def class_policy(spec: StudySpec) -> str | int | None:
    return None if spec.denoiser.class_policy == "none" else spec.denoiser.class_policy


# ---- provenance ------------------------------------------------------------------------------------------

def provenance(spec: StudySpec, device: str) -> dict[str, Any]:
    """:func:`edmbench.provenance.provenance` plus what identifies the study's inputs."""
    from edmbench.provenance import provenance as environment

    return {**environment(device=device, dtype=spec.denoiser.dtype), "spec_hash": spec.spec_hash[:16],
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
    objectives: tuple[str, ...] = (DEFAULT_OBJECTIVE,)
    shard: Any = None  # an edmbench.metrics.shard.Shard: each evaluation split over the ranks

    def rungs(self, config: Any, seeds: range, rungs: tuple[int, ...], on_batch: Any = None) -> Iterator[Any]:
        """``RungResult`` at each rung and at ``len(seeds)``: the one scoring pipeline,
        :func:`edmbench.metrics.evaluate.score_rungs` (sharded over the ranks when ``shard`` is set)."""
        from edmbench.metrics.evaluate import score_rungs
        from edmbench.metrics.kid_pr import KIDPROptions

        meters = {o.name: o.meter(self.denoiser, config, seeds, self.device)
                  for o in self._image_objectives() if o.meter is not None}
        if self.shard is not None and meters:  # refused before rank 0 announces work the others would wait on
            raise ValueError(f"objectives {', '.join(meters)} use a per-image meter, which does not merge "
                             "across ranks: run this study without torchrun")
        kid_pr = KIDPROptions(kid=True) if needs_kid(self.objectives) else None
        return score_rungs(self.denoiser, config, seeds, self.extractor, self.reference, rungs,
                           batch_size=self.batch_size, class_policy=self.class_policy, device=self.device,
                           kid_pr=kid_pr, meters=meters, on_batch=on_batch, shard=self.shard)

    def score(self, config: Any, seeds: range, rungs: tuple[int, ...], progress: Any = None) -> Iterator[Any]:
        """Yield ``(RungResult, {objective: Score})`` at each rung and at ``len(seeds)`` (the final one).

        Sharded (``shard``): rank 0 first announces the work to the other ranks
        (:func:`edmbench.study.distributed.announce`), which score their shares
        (:func:`edmbench.study.distributed.follow`); every rank sees the merged results, and closing this
        generator early (a pruned trial) stops every rank at that rung."""
        results = self.rungs(config, seeds, rungs, _Counter(progress))
        if self.shard is not None and self.shard.is_main:
            from edmbench.study.distributed import announce

            announce(self.shard, config, seeds, rungs)
        with closing(results):  # closed at once when the consumer stops: the other ranks wait on it
            yield from self._scored(results, self._image_objectives(), progress)

    def _image_objectives(self) -> list[Any]:
        return [get_objective(n) for n in self.objectives if not get_objective(n).cost]

    @staticmethod
    def _scored(results: Iterator[Any], image_objectives: list[Any], progress: Any) -> Iterator[Any]:
        for result in results:
            scores = {o.name: o.score(result) for o in image_objectives}
            primary = image_objectives[0]
            value = scores[primary.name].value
            if not math.isfinite(value):
                raise FloatingPointError(f"{primary.label} is {value} at {result.num_images} images")
            if progress is not None:
                progress.rung(result.num_images, value, primary.label)
            yield result, scores


class _Counter:
    """Counts the images generated so far and passes the count to the progress bar."""

    def __init__(self, progress: Any) -> None:
        self.progress, self.done = progress, 0

    def __call__(self, batch: Any) -> None:
        self.done += len(batch.seeds)
        if self.progress is not None:
            self.progress.images_done(self.done)


def preflight(spec: StudySpec) -> None:
    """Make every input local before any storage or work is created: the extractor and its weights, the
    reference statistics and the model file (downloaded into the cache if it is a manifest URL)."""
    from edmbench.metrics import features
    from edmbench.pretrained import resolve

    features.check_extractor_available(spec.metric.extractor,
                                       spec.metric.weights and str(resolve_path(spec.metric.weights)))
    _local(spec.metric.reference)
    resolve(_model_source(spec))


def make_scorer(spec: StudySpec, *, device: str = "cpu", batch_size: int = 64, shard: Any = None) -> Scorer:
    """Load what a study needs; a missing extractor weight file fails here, before any generation.
    ``shard``: split each evaluation over the ranks of a ``torch.distributed`` group (every rank loads)."""
    import torch

    from edmbench.metrics import features
    from edmbench.metrics.stats import load_reference
    from edmbench.pretrained import load

    weights = spec.metric.weights and str(resolve_path(spec.metric.weights))
    features.check_extractor_available(spec.metric.extractor, weights)
    reference = load_reference(_local(spec.metric.reference))
    denoiser = load(_model_source(spec), device=device, dtype=getattr(torch, spec.denoiser.dtype))
    extractor = features.get_extractor(spec.metric.extractor, weights, device=device)
    return Scorer(denoiser, extractor, reference, device, batch_size, class_policy(spec), spec.objectives,
                  shard=shard)


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

def trial_config(trial: Any, spec: StudySpec) -> Any:
    """The SamplerConfig for a trial: fixed knobs plus suggestions; constraints checked."""
    knobs = suggest_knobs(trial, spec.space, spec.fixed, spec.constraints)
    return sampler_config(knobs, {})


class StudyObjective:
    """Optuna objective: the spec's objectives of a trial; the first is reported at each rung (pruning)."""

    def __init__(self, spec: StudySpec, scorer: Scorer) -> None:
        self.spec, self.scorer = spec, scorer
        self.provenance = provenance(spec, scorer.device)

    def __call__(self, trial: Any, progress: Any = None) -> float | tuple[float, ...]:
        import optuna

        from edmbench.study.pruners import prune_reason

        spec, start = self.spec, time.perf_counter()
        try:
            config = trial_config(trial, spec)
        except ConstraintViolation as exc:  # no work done; the sampler learns to avoid the region
            TrialRecord(num_images=0, wall_time_s=0.0, pruned_reason=str(exc)).write(trial)
            raise optuna.TrialPruned(str(exc)) from None
        TrialRecord(nfe=config.nfe, endpoint=config.endpoint, afs=config.afs,
                    network_rounds=config.network_rounds,
                    provenance={"seeds": f"{spec.seeds.start}-{spec.seeds.stop - 1}",
                                **self.provenance}).write(trial)
        primary = get_objective(spec.objectives[0])
        counter, scores = _CountingProgress(progress), {}
        rungs, reached = self.scorer.score(config, spec.seeds, spec.metric.rungs, counter), 0
        try:
            for result, scores in rungs:
                reached = result.num_images
                if spec.multi_objective:
                    continue
                value = scores[primary.name].value  # paired evidence at every rung and the full count
                write_rung_evidence(trial, result.num_images, value, scores[primary.name].loo)
                if result.num_images < spec.metric.num_images:
                    trial.report(value, result.num_images)
                    if trial.should_prune():
                        reason = (prune_reason(getattr(getattr(trial, "study", None), "pruner", None),
                                               trial.number)
                                  or f"{primary.label} {value:.4g} at {result.num_images} images is worse "
                                  "than the pruner's threshold")
                        self._record(trial, scores, result.num_images, start, pruned_reason=reason)
                        raise optuna.TrialPruned()
        except optuna.TrialPruned:
            raise
        except BaseException:  # a failed or interrupted trial still records how far it got (sharded: the
            # last merged rung; the counter sees this rank's images only)
            self._record(trial, scores, counter.images if self.scorer.shard is None else reached, start)
            raise
        finally:
            rungs.close()  # at once, not when the traceback is freed: a sharded evaluation's ranks wait
        self._record(trial, scores, result.num_images, start)
        values = [float(config.nfe) if get_objective(n).cost else scores[n].value for n in spec.objectives]
        return tuple(values) if spec.multi_objective else values[0]

    @staticmethod
    def _record(trial: Any, scores: dict[str, Any], num_images: int, start: float,
                pruned_reason: str | None = None) -> None:
        """The latest rung's scores with their error bars, the image count and the time so far."""
        flat = {}
        for name, score in scores.items():
            flat[name] = float(score.value)
            flat[get_objective(name).err_column] = _finite_or_none(score.err)
        TrialRecord(scores=flat, num_images=int(num_images), wall_time_s=time.perf_counter() - start,
                    pruned_reason=pruned_reason).write(trial)


FIDObjective = StudyObjective  # the name before objectives were registered


class _CountingProgress:
    """Passes progress on and keeps the images generated so far, so a failed trial records its count."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.images = inner, 0

    def images_done(self, n: int) -> None:
        self.images = n
        if self.inner is not None:
            self.inner.images_done(n)

    def rung(self, n: int, value: float, label: str = "score") -> None:
        if self.inner is not None:
            self.inner.rung(n, value, label)


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def make_evaluator(spec: StudySpec, *, device: str = "cpu", batch_size: int = 64,
                   worker_id: int = 0, shard: Any = None) -> StudyObjective:
    """The default evaluator factory used by the runner (one per worker process; under torchrun one per
    rank, ``shard`` splitting each trial's images over the ranks)."""
    return StudyObjective(spec, make_scorer(spec, device=device, batch_size=batch_size, shard=shard))
