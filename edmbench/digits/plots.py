"""Figures for docs/embedded.md: a sample grid and FID-digits against NFE per sampler (matplotlib, lazy)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from edmbench.digits.data import NUM_CLASSES
from edmbench.sampling import SamplerConfig


def tile(images: Tensor, rows: int) -> Tensor:
    """uint8 ``[rows * cols, 1, H, W]`` -> one ``[rows * (H + 1) - 1, cols * (W + 1) - 1]`` mosaic
    (one-pixel mid-grey separators)."""
    n, _, h, w = images.shape
    if n % rows:
        raise ValueError(f"{n} images do not fill {rows} rows")
    cols = n // rows
    canvas = torch.full((rows * (h + 1) - 1, cols * (w + 1) - 1), 128, dtype=torch.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = images[i, 0]
    return canvas


def sample_grid(uncond, cond, path: str | Path, config: SamplerConfig | None = None) -> Path:
    """Two panels: 100 unconditional samples (seeds 0-99) and class-conditional samples, row c = class c."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edmbench.generate import generate_images

    config = config or SamplerConfig()
    free = torch.cat([b.images for b in generate_images(uncond, config, range(100), batch_size=100)])
    per_class = [next(generate_images(cond, config, range(10), batch_size=10, class_policy=c)).images
                 for c in range(NUM_CLASSES)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8))
    for ax, images, title in ((axes[0], free, "digits-edm-uncond"),
                              (axes[1], torch.cat(per_class), "digits-edm-cond (row = class 0-9)")):
        ax.imshow(tile(images, 10).numpy(), cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"{title}\nHeun, {config.num_steps} steps (NFE {config.nfe})", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def sampler_plot(rows: Sequence[dict], floor, path: str | Path) -> Path:
    """FID-digits +- jackknife error against NFE, one line per sampler, with the real-data floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for sampler in sorted({r["sampler"] for r in rows}):
        pts = sorted((r["nfe"], r["fid"], r["fid_err"]) for r in rows if r["sampler"] == sampler)
        nfe, fid, err = zip(*pts, strict=True)
        ax.errorbar(nfe, fid, yerr=err, marker="o", capsize=3, label=sampler)
    ax.axhspan(floor.fid - floor.fid_err, floor.fid + floor.fid_err, color="grey", alpha=0.3)
    ax.axhline(floor.fid, color="grey", ls="--", label=f"real-data floor (n={floor.n})")
    ax.set(xscale="log", yscale="log", xlabel="nfe", ylabel="FID-digits",
           title=f"digits-edm-uncond, n={rows[0]['num_images']} images per point")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
