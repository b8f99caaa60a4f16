"""Seeds -> uint8 image batches with EDM's quantisation, batch by batch (EDM generate.py, edm-facts Sec. 3).

Each batch gets its own per-seed ``NoiseSource``; per seed it draws the latents, then the class label (if
the model is conditional), then the sampler's step noise. So image i depends only on seed i, whatever
the batch size. Nothing here holds more than one batch of images.
"""

from __future__ import annotations

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


def parse_seeds(text: str | int | Iterable[int]) -> Sequence[int]:
    """EDM's seed syntax: ``"0-63"`` (inclusive), ``"1,2,5-10"``; ints and int lists pass through.

    A single range (``"0-49999"`` or a ``range``) stays a ``range``, so 50k seeds cost no memory."""
    if isinstance(text, int):
        return [text]
    if isinstance(text, range):
        return text
    if not isinstance(text, str):
        return [int(s) for s in text]
    single = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if single and int(single[2]) >= int(single[1]):
        return range(int(single[1]), int(single[2]) + 1)
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise ValueError(f"bad seed range {part!r} in {text!r}; use e.g. '0-49999' or '1,2,5-10'")
        lo, hi = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if hi < lo:
            raise ValueError(f"seed range {part!r} is empty (end before start)")
        seeds.extend(range(lo, hi + 1))
    return seeds


def format_seeds(seeds: Sequence[int]) -> str:
    """The inverse of ``parse_seeds``: ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    if isinstance(seeds, range) and seeds.step == 1 and len(seeds) > 1:
        return f"{seeds.start}-{seeds.stop - 1}"
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


def generate_images(denoiser, config, seeds: Sequence[int], *, batch_size: int = 64,
                    class_policy: str | int | None = "random", device: str | torch.device = "cpu",
                    noise_device: str | torch.device = "cpu") -> Iterator[ImageBatch]:
    """Sample ``seeds`` in consecutive batches of at most ``batch_size`` and yield quantised ``ImageBatch``es.

    ``config`` is a ``SamplerConfig``; the denoiser must live on ``device``. The per-seed generators live on
    ``noise_device`` (``"cuda"`` reproduces NVIDIA's GPU streams; ``"cpu"`` gives the same images anywhere).
    """
    from edmbench.sampling import sample

    seeds = parse_seeds(seeds)
    if not seeds:
        raise ValueError("no seeds given")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _check_policy(class_policy, denoiser.label_dim)
    for start in range(0, len(seeds), batch_size):
        chunk = list(seeds[start:start + batch_size])
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
