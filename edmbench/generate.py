"""Seeds -> uint8 image batches with EDM's quantisation, batch by batch (EDM generate.py, edm-facts Sec. 3).

Each batch gets its own per-seed ``NoiseSource``; per seed it draws the latents, then the class label (if
the model is conditional), then the sampler's step noise. So image i depends only on seed i, whatever
the batch size. Nothing here holds more than one batch of images.
"""

from __future__ import annotations

import bisect
import itertools
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from edmbench.sampling.noise import NoiseSource

CLASS_POLICIES = "'random', an int class index, or None (unconditional)"


def quantize(x: Tensor) -> Tensor:
    """EDM's float -> uint8: truncate(clip(127.5 x + 128, 0, 255)), i.e. -1 -> 0, 0 -> 128, 1 -> 255."""
    x = x.to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError("the sampler produced NaN or infinite values; these settings diverge")
    return (x * 127.5 + 128).clip(0, 255).to(torch.uint8)


@dataclass
class ImageBatch:
    """One batch of generated images: ``images`` uint8 ``[B, C, H, W]`` (CPU), one seed per image,
    the one-hot ``class_labels`` given to the sampler (or None) and the counted ``nfe`` per image."""

    seeds: list[int]
    images: Tensor
    class_labels: Tensor | None
    nfe: int


MAX_SEED = 2**63 - 1  # torch generators take seeds below 2^64; EDM's are small non-negative ints
_LIST_LIMIT = 1_000_000  # seed sets up to this size are plain lists; larger ones stay lazy (SeedRanges)


class SeedRanges(Sequence[int]):
    """A lazy concatenation of ``range``s (``"1,2,5-10"`` with huge parts): length, indexing, slicing and
    iteration without materialising the seeds."""

    def __init__(self, ranges: Sequence[range]) -> None:
        self.ranges = [r for r in ranges if len(r)]
        self._ends = list(itertools.accumulate(len(r) for r in self.ranges))

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __iter__(self) -> Iterator[int]:
        return itertools.chain.from_iterable(self.ranges)

    def __getitem__(self, index):  # int -> seed, slice (step 1) -> SeedRanges
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("SeedRanges slices take step 1")
            return SeedRanges(self._cut(start, stop))
        index = index + len(self) if index < 0 else index
        if not 0 <= index < len(self):
            raise IndexError("seed index out of range")
        k = bisect.bisect_right(self._ends, index)
        return self.ranges[k][index - (self._ends[k - 1] if k else 0)]

    def _cut(self, start: int, stop: int) -> list[range]:
        out, begin = [], 0
        for r, end in zip(self.ranges, self._ends, strict=True):
            lo, hi = max(start, begin) - begin, min(stop, end) - begin
            if lo < hi:
                out.append(r[lo:hi])
            begin = end
        return out


def shift_seeds(seeds: Sequence[int], offset: int) -> Sequence[int]:
    """``seeds`` + ``offset`` without materialising ranges (EDM's disjoint repeat ranges)."""
    if isinstance(seeds, range):
        return range(seeds.start + offset, seeds.stop + offset, seeds.step)
    if isinstance(seeds, SeedRanges):
        return SeedRanges([range(r.start + offset, r.stop + offset, r.step) for r in seeds.ranges])
    return [s + offset for s in seeds]


def parse_seeds(text: str | int | Iterable[int]) -> Sequence[int]:
    """EDM's seed syntax: ``"5"`` (seed 5 only), ``"0-63"`` (inclusive), ``"1,2,5-10"``; ints and int
    lists pass through.

    A single range (``"0-49999"`` or a ``range``) stays a ``range``, and lists of more than a million seeds
    stay lazy (``SeedRanges``), so any length costs no memory. Seeds are integers in [0, 2^63).
    """
    if isinstance(text, int):
        return [text]
    if isinstance(text, range | SeedRanges):
        return text
    if not isinstance(text, str):
        return [int(s) for s in text]
    parts: list[range] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d{1,19})\s*(?:-\s*(\d{1,19})\s*)?", part)
        if match is None:
            raise ValueError(f"bad seed range {part[:40]!r} in --seeds; use e.g. '0-49999', '5' or "
                             "'1,2,5-10' (non-negative integers below 2^63)")
        lo, hi = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if hi > MAX_SEED:
            raise ValueError(f"seed {hi} is too large; seeds are integers in [0, 2^63)")
        if hi < lo:
            raise ValueError(f"seed range {part!r} is empty (end before start)")
        parts.append(range(lo, hi + 1))
    if len(parts) == 1 and len(parts[0]) > 1:
        return parts[0]
    seeds = SeedRanges(parts)
    return list(seeds) if len(seeds) <= _LIST_LIMIT else seeds


def format_seeds(seeds: Sequence[int]) -> str:
    """The inverse of ``parse_seeds``: ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    if isinstance(seeds, range) and seeds.step == 1 and len(seeds) > 1:
        return f"{seeds.start}-{seeds.stop - 1}"
    if isinstance(seeds, SeedRanges):
        return ",".join(format_seeds(r) for r in seeds.ranges)
    parts: list[str] = []
    seeds = list(seeds)
    start = 0
    for i in range(1, len(seeds) + 1):
        if i == len(seeds) or seeds[i] != seeds[i - 1] + 1:
            lo, hi = seeds[start], seeds[i - 1]
            parts.append(str(lo) if lo == hi else f"{lo}-{hi}")
            start = i
    return ",".join(parts)


def _class_labels(noise_source: NoiseSource, label_dim: int, class_policy, device) -> Tensor | None:
    """Draw labels as EDM does (always, for conditional models, so the noise stream never shifts),
    then apply the policy: keep ('random'), overwrite with one class (int), or drop (None)."""
    drawn = noise_source.class_labels(label_dim, device=device)
    if class_policy == "random":
        return drawn
    if class_policy is None:
        return None
    return torch.nn.functional.one_hot(torch.full((len(noise_source),), class_policy, device=device),
                                       label_dim).to(torch.float32)


def _check_policy(class_policy, label_dim: int) -> None:
    if class_policy in ("random", None):
        return
    if isinstance(class_policy, bool) or not isinstance(class_policy, int):
        raise ValueError(f"class_policy must be {CLASS_POLICIES}, got {class_policy!r}")
    if label_dim == 0:
        raise ValueError(f"class_policy={class_policy} needs a conditional model, but label_dim=0")
    if not 0 <= class_policy < label_dim:
        raise ValueError(f"class {class_policy} is out of range [0, {label_dim}) for this model")


def batch_bounds(num_images: int, batch_size: int, rungs: Sequence[int] = ()) -> Iterator[tuple[int, int]]:
    """``[start, stop)`` index ranges of consecutive batches of at most ``batch_size``, cut at each rung.

    A batch never straddles a rung, so a consumer that stops at a rung (a pruned trial) has generated no
    image past it; batch invariance keeps the images the same as with uncut batches. Lazy: a seed range of
    any length costs nothing before its first batch."""
    cuts = sorted({r for r in rungs if 0 < r < num_images} | {num_images})
    start = 0
    for cut in cuts:
        while start < cut:
            stop = min(start + batch_size, cut)
            yield start, stop
            start = stop


def generate_images(denoiser, config, seeds: Sequence[int], *, batch_size: int = 64,
                    class_policy: str | int | None = "random", device: str | torch.device = "cpu",
                    noise_device: str | torch.device = "cpu",
                    rungs: Sequence[int] = ()) -> Iterator[ImageBatch]:
    """Sample ``seeds`` in consecutive batches of at most ``batch_size`` and yield quantised ``ImageBatch``es.

    ``config`` is a ``SamplerConfig``; the denoiser must live on ``device``. The per-seed generators live on
    ``noise_device`` (``"cuda"`` reproduces NVIDIA's GPU streams; ``"cpu"`` gives the same images anywhere).
    ``rungs`` (image counts) cut the batches so none crosses a rung (``batch_bounds``); a batch is only
    generated when the consumer asks for it.
    """
    from edmbench.sampling import sample

    seeds = parse_seeds(seeds)
    if not seeds:
        raise ValueError("no seeds given")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _check_policy(class_policy, denoiser.label_dim)
    for start, stop in batch_bounds(len(seeds), batch_size, rungs):
        chunk = list(seeds[start:stop])
        noise_source = NoiseSource(chunk, device=noise_device)
        noise = noise_source.latents(denoiser.image_shape, device=device)
        labels = _class_labels(noise_source, denoiser.label_dim, class_policy, device)
        with torch.no_grad():  # uint8 out: no graph to keep (scoped to the call, never across a yield)
            result = sample(denoiser, config, noise, noise_source=noise_source, class_labels=labels)
        yield ImageBatch(seeds=chunk, images=quantize(result.x).cpu(),
                         class_labels=None if labels is None else labels.cpu(), nfe=int(result.nfe))


def png_path(outdir: str | os.PathLike, seed: int, subdirs: bool = True) -> Path:
    """EDM's layout: ``{seed:06d}.png``, inside ``{seed - seed % 1000:06d}/`` when ``subdirs``."""
    name = f"{seed:06d}.png"
    return Path(outdir) / f"{seed - seed % 1000:06d}" / name if subdirs else Path(outdir) / name


def save_png(batch: ImageBatch, outdir: str | os.PathLike, subdirs: bool = True) -> list[Path]:
    """Write each image of ``batch`` as PNG (greyscale 'L' for one channel, else RGB); returns the paths."""
    from PIL import Image

    if batch.images.dtype != torch.uint8 or batch.images.shape[1] not in (1, 3):
        raise ValueError(f"PNG needs uint8 images with 1 or 3 channels, got {batch.images.dtype} "
                         f"{tuple(batch.images.shape)}")
    paths = []
    for seed, image in zip(batch.seeds, batch.images, strict=True):
        path = png_path(outdir, seed, subdirs)
        path.parent.mkdir(parents=True, exist_ok=True)
        hwc = image.permute(1, 2, 0).numpy()
        Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc, "L" if hwc.shape[2] == 1 else "RGB"
                        ).save(path)
        paths.append(path)
    return paths
