"""Figures from result tables. Functions return matplotlib Figures (Agg backend); callers save them.

Column names follow the study table (``edmbench.study.results``): ``sampler``, ``nfe``, ``fid``, ``fid_err``,
``state``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def best_per_nfe(table: Any) -> Any:
    """For each (sampler, nfe), the COMPLETE row with the lowest FID."""
    done = table[table["state"] == "COMPLETE"].dropna(subset=["fid", "nfe"])
    if done.empty:
        return done
    index = done.groupby(["sampler", "nfe"])["fid"].idxmin()
    return done.loc[index.values].sort_values(["sampler", "nfe"])


def fid_vs_nfe(table: Any, published: Iterable[Any] = (), *, title: str = "FID vs NFE") -> Any:
    """Best FID at each NFE per sampler with error bars; published points (label, nfe, fid) beside ours."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    best = best_per_nfe(table)
    for sampler, rows in best.groupby("sampler"):
        err = rows["fid_err"].astype(float).fillna(0.0) if "fid_err" in rows else None
        ax.errorbar(rows["nfe"], rows["fid"], yerr=err, marker="o", capsize=3, label=f"{sampler} (ours)")
    for point in published:
        ax.scatter([point.nfe], [point.fid], marker="*", s=120, zorder=3, label=f"{point.label} (published)")
    ax.set_xlabel("NFE (denoiser evaluations per image)")
    ax.set_ylabel("FID")
    ax.set_title(title)
    if best.shape[0] or ax.collections:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def fid_nfe_pareto(table: Any, front: Any, *, title: str = "Pareto front: FID vs NFE") -> Any:
    """All COMPLETE trials as dots, the non-dominated ones joined as a step line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    done = table[table["state"] == "COMPLETE"]
    ax.scatter(done["nfe"], done["fid"], alpha=0.4, label="trials")
    ax.step(front["nfe"], front["fid"], where="post", color="C3", marker="o", label="Pareto front")
    ax.set_xlabel("NFE (denoiser evaluations per image)")
    ax.set_ylabel("FID")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def optuna_figures(study: Any, params: Sequence[str]) -> dict[str, Any]:
    """Optuna's matplotlib views that apply to this study: history, importances, slices, contours, rungs."""
    import optuna
    import optuna.visualization.matplotlib as ovm

    _pyplot()
    single = len(study.directions) == 1
    target = None if single else (lambda t: t.values[0])
    views = {"history": lambda: ovm.plot_optimization_history(study, target=target, target_name="FID"),
             "slice": lambda: ovm.plot_slice(study, target=target, target_name="FID")}
    if len(params) >= 2:
        views["importances"] = lambda: ovm.plot_param_importances(study, target=target, target_name="FID")
        views["contour"] = lambda: ovm.plot_contour(study, params=list(params)[:2], target=target,
                                                    target_name="FID")
    if single:
        views["intermediate"] = lambda: ovm.plot_intermediate_values(study)
    else:
        views["pareto_optuna"] = lambda: ovm.plot_pareto_front(study, target_names=["FID", "NFE"])
    figures = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, make in views.items():
            try:
                figures[name] = _figure_of(make())
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few trials for this view
                warnings.warn(f"plot {name!r} skipped: {exc}", stacklevel=2)
    return figures


def _figure_of(axes: Any) -> Any:
    import numpy as np

    first = np.asarray(axes).ravel()[0] if isinstance(axes, np.ndarray) else axes
    return first.figure


def image_grid(images: Any, ncols: int = 8) -> Any:
    """uint8 ``[B, C, H, W]`` -> one ``[rows*H, ncols*W, C]`` array (blank cells are black)."""
    import numpy as np

    x = np.asarray(images)
    b, c, h, w = x.shape
    rows = -(-b // ncols)
    grid = np.zeros((rows * h, ncols * w, c), dtype=np.uint8)
    for i in range(b):
        r, col = divmod(i, ncols)
        grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = x[i].transpose(1, 2, 0)
    return grid


def sample_grids(panels: Sequence[tuple[str, Any]], ncols: int = 8) -> Any:
    """Side-by-side sample grids, e.g. ``[("best: ...", images), ("baseline: ...", images)]``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for ax, (label, images) in zip(axes[0], panels, strict=True):
        grid = image_grid(images, ncols)
        ax.imshow(grid[..., 0] if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=255)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig
