"""One-call FID of a denoiser + sampler settings on given seeds, and EDM's repeated-seed-range protocol.

``evaluate_fid`` wires the whole path: seeds -> ``generate_images`` -> extractor -> ``fid_at_rungs`` and
returns an ``FIDResult`` record carrying its provenance. ``edm_protocol`` repeats it on disjoint seed ranges
(EDM: 0-49999, 50000-99999, 100000-149999) and reports the minimum and the spread.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from edmbench.generate import format_seeds, generate_images, parse_seeds, save_png
from edmbench.metrics.features import check_extractor_available, get_extractor
from edmbench.metrics.fid import RungResult, fid_at_rungs
from edmbench.metrics.kid_pr import KIDPROptions
from edmbench.metrics.stats import ReferenceStats, load_reference


@dataclass
class FIDResult:
    """FID with its image count and uncertainty, NFE, timing and provenance (one evaluation)."""

    fid: float
    n: int
    fid_err: float
    fid_debiased: float
    interval: tuple[float, float]
    level: float
    nfe: float | None
    wall_time: float
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
        return (f"FID {self.fid:.5g}{err}{band}; n={self.n} NFE={nfe} wall {self.wall_time:.1f} s "
                f"({self.images_per_second:.1f} img/s)")


def _code_version() -> dict:
    import edmbench

    return {"edmbench": edmbench.__version__, "torch": torch.__version__, "python": platform.python_version()}


def _resolve_reference(reference: ReferenceStats | str | Path) -> ReferenceStats:
    return reference if isinstance(reference, ReferenceStats) else load_reference(reference)


def _resolve_extractor(extractor, weights_path, device) -> tuple[torch.nn.Module, str]:
    if isinstance(extractor, str):
        check_extractor_available(extractor, weights_path)
        return get_extractor(extractor, weights_path, device), extractor
    return extractor, getattr(extractor, "name", type(extractor).__name__)


def _saving(batches, outdir):
    for batch in batches:
        save_png(batch, outdir)
        yield batch


def evaluate_fid(denoiser, config, seeds: str | Sequence[int], reference: ReferenceStats | str | Path,
                 extractor="inception-v3-compat", *, weights_path=None, batch_size: int = 64,
                 class_policy: str | int | None = "random", device: str = "cpu", noise_device: str = "cpu",
                 rungs: Sequence[int] | None = None, uncertainty: str | None = "jackknife", groups: int = 10,
                 level: float = 0.95, kid_pr: KIDPROptions | None = None,
                 outdir: str | Path | None = None) -> FIDResult:
    """FID of ``denoiser`` sampled with ``config`` on ``seeds`` against ``reference``.

    ``extractor`` is a registered name (checked, weights included, before anything is generated) or a
    ready extractor module. ``rungs`` adds intermediate results (``FIDResult.rungs``); the final result is at
    ``len(seeds)``. ``outdir`` also saves the PNGs in EDM's layout.
    """
    seeds = parse_seeds(seeds)
    rungs = sorted({*(rungs or []), len(seeds)})
    if rungs[-1] > len(seeds):
        raise ValueError(f"rung {rungs[-1]} exceeds the {len(seeds)} seeds")
    extractor, extractor_name = _resolve_extractor(extractor, weights_path, device)
    reference = _resolve_reference(reference)
    if kid_pr is not None and kid_pr.any and reference.features is None:
        raise ValueError("KID and precision/recall need reference feature rows, but the reference statistics "
                         "hold only mu and sigma; build them with `edmbench ref --keep-features N`")
    start = time.perf_counter()
    batches = generate_images(denoiser, config, seeds, batch_size=batch_size, class_policy=class_policy,
                              device=device, noise_device=noise_device)
    if outdir is not None:
        batches = _saving(batches, outdir)
    results = list(fid_at_rungs(batches, extractor, reference, rungs, uncertainty=uncertainty, groups=groups,
                                level=level, kid_pr=kid_pr))
    wall = time.perf_counter() - start
    last = results[-1]
    provenance = {"sampler": config.to_dict(), "seeds": format_seeds(seeds), "n": len(seeds),
                  "class_policy": class_policy, "extractor": extractor_name,
                  "reference": reference.provenance,
                  "uncertainty": uncertainty, "groups": groups, "device": str(device),
                  "noise_device": str(noise_device), "batch_size": batch_size, **_code_version()}
    return FIDResult(fid=last.fid, n=last.n, fid_err=last.fid_err, fid_debiased=last.fid_debiased,
                     interval=last.interval, level=last.level, nfe=last.nfe, wall_time=wall,
                     images_per_second=last.n / wall, extra=last.extra, rungs=results, provenance=provenance)


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
    extractor, _ = _resolve_extractor(extractor, weights_path, device)
    reference = _resolve_reference(reference)
    results = []
    for i in range(repeats):
        lo = first_seed + i * num_images
        results.append(evaluate_fid(denoiser, config, range(lo, lo + num_images), reference, extractor,
                                    device=device, **kwargs))
    return ProtocolResult(results)
