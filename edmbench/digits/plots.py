"""Figures for docs/embedded.md: a sample grid and FID-digits against NFE per sampler, built from the shared
pieces of :mod:`edmbench.plots` (matplotlib, lazy)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from edmbench.digits.data import NUM_CLASSES
from edmbench.sampling import SamplerConfig


def sample_grid(uncond, cond, path: str | Path, config: SamplerConfig | None = None) -> Path:
    """Two panels: 100 unconditional samples (seeds 0-99, ten per row) and class-conditional samples
    (row c = class c, seeds 0-9); square pixels, nearest-neighbour upscale (``edmbench.plots``)."""
    from edmbench.generate import generate_images
    from edmbench.plots import sample_grids, seed_row_labels

    config = config or SamplerConfig()
    free = torch.cat([b.images for b in generate_images(uncond, config, range(100), batch_size=100)])
    per_class = [next(generate_images(cond, config, range(10), batch_size=10, class_policy=c)).images
                 for c in range(NUM_CLASSES)]
    how = f"{config.sampler}, {config.num_steps} steps (NFE {config.nfe})"
    fig = sample_grids([(f"digits-edm-uncond\n{how}", free, seed_row_labels(range(100), 10)),
                        (f"digits-edm-cond, row = requested class (seeds 0-9)\n{how}", torch.cat(per_class),
                         [f"class {c}" for c in range(NUM_CLASSES)])], ncols=10, cmap="gray_r")
    return _save(fig, path)


def sampler_plot(rows: Sequence[dict], floor, path: str | Path) -> Path:
    """FID-digits +- jackknife error against NFE, one line per sampler, with the real-data floor."""
    from edmbench.plots import Floor, draw_floor, draw_sampler_lines, fid_axes, finish_fid_axes

    fig, ax = fid_axes(f"digits-edm-uncond: FID-digits vs NFE, n = {rows[0]['num_images']} images per point",
                       figsize=(6.4, 4.4))
    draw_sampler_lines(ax, rows)
    draw_floor(ax, Floor(floor.fid, floor.fid_err, floor.num_images, "real-data floor (half A vs half B)"))
    finish_fid_axes(ax, ylabel="FID-digits", log=True)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    from edmbench.plots import GRID_DPI

    fig.savefig(path, dpi=GRID_DPI, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
