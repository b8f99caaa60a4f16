"""The scoring pipeline: denoiser + sampler settings + seeds -> images -> features -> results at rungs.

:func:`score_rungs` is the one pipeline (used by ``edmbench fid``, the study objective and the digits
evaluation): it generates the images of ``seeds`` without autograd, feeds them to the extractor and the
reference statistics (``fid_at_rungs``) and, optionally, to per-batch ``meters`` (objectives that are not a
function of the features), and yields a ``RungResult`` at each rung and at ``len(seeds)``. Batches are cut
at the rungs, so a meter sees exactly the images of its rung.

``evaluate_fid`` wraps it into an ``FIDResult`` record carrying :func:`edmbench.provenance.provenance`;
``edm_protocol`` repeats it on disjoint seed ranges (EDM: 0-49999, 50000-99999, 100000-149999) and reports
the minimum and the spread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from edmbench.generate import ImageBatch, SeedRanges, format_seeds, generate_images, parse_seeds, save_png
from edmbench.metrics.features import check_extractor_available, get_extractor
from edmbench.metrics.fid import RungResult, fid_at_rungs
from edmbench.metrics.kid_pr import KIDPROptions
from edmbench.metrics.stats import ReferenceStats, load_reference


@dataclass(frozen=True)
class Score:
    """One objective's value at one rung, its error bar (None: unknown), its leave-one-seed-group-out
    values (``loo``, groups by seed, for paired jackknife statistics) and, when the objective has them, its
    per-seed values (``[num_images]``, in seed order)."""

    value: float
    err: float | None = None
    per_seed: Any = None
    loo: tuple[float, ...] = ()


class Meter(Protocol):
    """A per-batch accumulator for an objective that the feature statistics do not give."""

    def update(self, batch: ImageBatch) -> None: ...

    def result(self) -> Score: ...


def score_rungs(denoiser, config, seeds: Sequence[int], extractor, reference: ReferenceStats,
                rungs: Sequence[int] | None = None, *, batch_size: int = 64,
                class_policy: str | int | None = "random", device: str = "cpu", noise_device: str = "cpu",
                uncertainty: str | None = "jackknife", groups: int = 10, level: float = 0.95,
                kid_pr: KIDPROptions | None = None, meters: Mapping[str, Meter] | None = None,
                on_batch: Callable[[ImageBatch], None] | None = None, shard=None) -> Iterator[RungResult]:
    """Yield a ``RungResult`` at each of ``rungs`` below ``len(seeds)`` and at ``len(seeds)``.

    ``extractor`` is a ready module; ``meters[name].result()`` lands in ``RungResult.extra[name]``;
    ``on_batch`` sees every generated batch (progress, saving PNGs). ``shard`` (an
    ``edmbench.metrics.shard.Shard``) splits the seeds over ranks; every rank yields the merged results."""
    seeds = seeds if isinstance(seeds, range | SeedRanges) else list(seeds)  # ranges stay lazy
    stops = sorted({*(r for r in (rungs or ()) if r < len(seeds)), len(seeds)})
    if rungs and max(rungs) > len(seeds):
        raise ValueError(f"rung {max(rungs)} exceeds the {len(seeds)} seeds")
    meters = dict(meters or {})
    plan, local_seeds, local_stops = None, seeds, stops
    if shard is not None:
        if meters:
            raise ValueError(f"meters ({', '.join(meters)}) do not merge across ranks; run them unsharded")
        plan = shard.plan(seeds, stops)
        local_seeds, local_stops = plan.seeds, plan.local_rungs
    batches = _tapped(generate_images(denoiser, config, local_seeds, batch_size=batch_size,
                                      class_policy=class_policy, device=device, noise_device=noise_device,
                                      rungs=local_stops) if len(local_seeds) else iter(()),
                      meters, on_batch)
    for result in fid_at_rungs(batches, extractor, reference, stops, uncertainty=uncertainty, groups=groups,
                               level=level, kid_pr=kid_pr, shard=shard, plan=plan):
        for name, meter in meters.items():
            result.extra[name] = meter.result()
        yield result


def _tapped(batches: Iterable[ImageBatch], meters: Mapping[str, Meter],
            on_batch: Callable[[ImageBatch], None] | None) -> Iterator[ImageBatch]:
    """Generate each batch without autograd and feed it to the meters and ``on_batch``. The batches are
    already cut at the rungs (``generate_images(rungs=...)``), so a meter sees exactly a rung's images."""
    source = iter(batches)
    while True:
        with torch.no_grad():
            batch = next(source, None)
        if batch is None:
            return
        for meter in meters.values():
            meter.update(batch)
        if on_batch is not None:
            on_batch(batch)
        yield batch


@dataclass
class FIDResult:
    """FID with its image count and uncertainty, NFE, timing and provenance (one evaluation)."""

    fid: float
    num_images: int
    fid_err: float
    fid_debiased: float
    interval: tuple[float, float]
    level: float
    nfe: float | None
    wall_time_s: float
    images_per_second: float
    extra: dict = field(default_factory=dict)
    rungs: list[RungResult] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(out.pop("extra"))
        out["rungs"] = [r.to_dict() for r in self.rungs]
        return out

    def summary(self) -> str:
        """One human line: FID +- error (n, NFE, time)."""
        err = "" if math.isnan(self.fid_err) else f" +- {self.fid_err:.4g} (jackknife 1 s.e.)"
        lo, hi = self.interval
        band = "" if math.isnan(lo) else (f"; debiased {self.fid_debiased:.5g}, {self.level:.0%} interval "
                                          f"[{lo:.5g}, {hi:.5g}]")
        nfe = "?" if self.nfe is None else f"{self.nfe:g}"
        return (f"FID {self.fid:.5g}{err}{band}; num_images={self.num_images} NFE={nfe} wall "
                f"{self.wall_time_s:.1f} s ({self.images_per_second:.1f} img/s)")


def resolve_reference(reference: ReferenceStats | str | Path) -> ReferenceStats:
    """Reference statistics as given, or loaded from a ``.npz`` path."""
    return reference if isinstance(reference, ReferenceStats) else load_reference(reference)


def resolve_extractor(extractor, weights_path, device) -> tuple[torch.nn.Module, str]:
    """A registered extractor name (weights checked first) or a ready module, and its name."""
    if isinstance(extractor, str):
        check_extractor_available(extractor, weights_path)
        return get_extractor(extractor, weights_path, device), extractor
    return extractor, getattr(extractor, "name", type(extractor).__name__)


def evaluate_fid(denoiser, config, seeds: str | Sequence[int], reference: ReferenceStats | str | Path,
                 extractor="inception-v3-compat", *, weights_path=None, batch_size: int = 64,
                 class_policy: str | int | None = "random", device: str = "cpu", noise_device: str = "cpu",
                 rungs: Sequence[int] | None = None, uncertainty: str | None = "jackknife", groups: int = 10,
                 level: float = 0.95, kid_pr: KIDPROptions | None = None,
                 outdir: str | Path | None = None, shard=None) -> FIDResult:
    """FID of ``denoiser`` sampled with ``config`` on ``seeds`` against ``reference``.

    ``extractor`` is a registered name (checked, weights included, before anything is generated) or a
    ready extractor module. ``rungs`` adds intermediate results (``FIDResult.rungs``); the final result is at
    ``len(seeds)``. ``outdir`` also saves the PNGs in EDM's layout. ``shard``: see ``score_rungs``.
    """
    from edmbench.provenance import provenance

    seeds = parse_seeds(seeds)
    if rungs and max(rungs) > len(seeds):
        raise ValueError(f"rung {max(rungs)} exceeds the {len(seeds)} seeds")
    extractor, extractor_name = resolve_extractor(extractor, weights_path, device)
    reference = resolve_reference(reference)
    if kid_pr is not None and kid_pr.any and reference.features is None:
        raise ValueError("KID and precision/recall need reference feature rows, but the reference statistics "
                         "hold only mu and sigma; build them with `edmbench ref --keep-features N`")
    start = time.perf_counter()
    save = None if outdir is None else (lambda batch: save_png(batch, outdir))
    results = list(score_rungs(denoiser, config, seeds, extractor, reference, rungs, batch_size=batch_size,
                               class_policy=class_policy, device=device, noise_device=noise_device,
                               uncertainty=uncertainty, groups=groups, level=level, kid_pr=kid_pr,
                               on_batch=save, shard=shard))
    wall = time.perf_counter() - start
    last = results[-1]
    dtype = next((p.dtype for p in denoiser.parameters()), torch.float32) if hasattr(
        denoiser, "parameters") else torch.float32
    record = {**provenance(device=device, dtype=dtype), "sampler": config.to_dict(),
              "seeds": format_seeds(seeds), "num_images": len(seeds), "class_policy": class_policy,
              "extractor": extractor_name, "reference": reference.provenance, "uncertainty": uncertainty,
              "groups": groups, "noise_device": str(noise_device), "batch_size": batch_size}
    return FIDResult(fid=last.fid, num_images=last.num_images, fid_err=last.fid_err,
                     fid_debiased=last.fid_debiased, interval=last.interval, level=last.level,
                     nfe=last.nfe, wall_time_s=wall, images_per_second=last.num_images / wall,
                     extra=last.extra, rungs=results, provenance=record)


@dataclass
class ProtocolResult:
    """EDM's protocol: one ``FIDResult`` per disjoint seed range; report ``fid_min`` (EDM) and the spread."""

    results: list[FIDResult]

    @property
    def fids(self) -> list[float]:
        return [r.fid for r in self.results]

    @property
    def fid_min(self) -> float:
        return min(self.fids)

    @property
    def fid_spread(self) -> float:
        """max - min over the seed ranges."""
        return max(self.fids) - min(self.fids)

    def summary(self) -> str:
        ranges = ", ".join(f"{r.provenance['seeds']}: {r.fid:.5g}" for r in self.results)
        return (f"FID min {self.fid_min:.5g}, spread {self.fid_spread:.3g} over {len(self.results)} seed "
                f"ranges ({ranges})")


def edm_protocol(denoiser, config, reference, extractor="inception-v3-compat", *, num_images: int = 50_000,
                 repeats: int = 3, first_seed: int = 0, weights_path=None, device: str = "cpu",
                 **kwargs) -> ProtocolResult:
    """Score ``repeats`` disjoint seed ranges of ``num_images`` (EDM: 3 x 50k from seed 0) and keep all."""
    if repeats < 1 or num_images < 2:
        raise ValueError(f"need repeats >= 1 and num_images >= 2, got {repeats} and {num_images}")
    extractor, _ = resolve_extractor(extractor, weights_path, device)
    reference = resolve_reference(reference)
    results = []
    for i in range(repeats):
        lo = first_seed + i * num_images
        results.append(evaluate_fid(denoiser, config, range(lo, lo + num_images), reference, extractor,
                                    device=device, **kwargs))
    return ProtocolResult(results)
