"""Figures from result tables. Functions return matplotlib Figures (Agg backend); callers save them.

Column names follow the study table (``edmbench.study.results``): ``sampler``, ``nfe``, ``fid``, ``fid_err``,
``state``. Every FID figure is built from the same pieces, so a new one is a few lines:

    fig, ax = fid_axes(title)               # one size, one font size, legible at the size written
    draw_sampler_lines(ax, rows)            # one line per sampler, error bars = +- fid_err
    draw_floor(ax, Floor(...))              # the real-data floor as a dashed line with its band
    draw_published(ax, points)              # published numbers: black hollow markers, NFE convention named
    draw_heldout(ax, points)                # held-out confirmation: filled squares, 95 % intervals
    finish_fid_axes(ax, log=...)            # labels, legend, the error-bar convention in a footnote

The x axis is one NFE convention (``edmbench.sampling.conventions.AXIS_LABEL``: network calls per image,
counted); published points are put on it by ``PublishedPoint.on_axis`` and flagged when inexact.

Sample grids (:func:`sample_grids`) keep square pixels: cells are upscaled by an integer factor
(nearest-neighbour; 8x8 digits x6), drawn with ``aspect="equal"`` and labelled by row.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

FONT_SIZE = 9  # points; at the sizes below and 100-120 dpi this stays readable without zooming
FIGSIZE = (6.4, 4.4)  # inches
ERRORBAR_NOTE = "error bars: ± jackknife standard error (fid_err)"
CELL_PX = 48  # sample-grid cells are upscaled by an integer factor to about this many pixels
GRID_DPI = 120  # the dpi edmbench saves figures at; grids are sized for about 1:1 pixels there


@dataclass(frozen=True)
class Floor:
    """FID between two sets of real images: what a perfect model would score at ``num_images``."""

    fid: float
    fid_err: float
    num_images: int
    label: str = "real-data floor"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _records(rows: Any) -> list[dict]:
    return rows.to_dict("records") if hasattr(rows, "to_dict") else [dict(r) for r in rows]


# ---- FID against NFE -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeldOut:
    """One held-out confirmation result: ``fid`` (the jackknife bias-corrected mean over the held-out
    ranges) with its ``interval`` at ``level``, on ``num_images`` held-out images, for the trial's
    ``role``."""

    nfe: float
    fid: float
    interval: tuple[float, float]
    num_images: int
    role: str
    level: float = 0.95


def best_per_nfe(table: Any, full_count: int | None = None) -> Any:
    """For each (sampler, nfe), the lowest-FID row among the COMPLETE trials that reached the full image
    count (``full_count``; None: every COMPLETE trial)."""
    done = table[table["state"] == "COMPLETE"].dropna(subset=["fid", "nfe"])
    if full_count is not None and "num_images" in done:
        done = done[done["num_images"] == full_count]
    if done.empty:
        return done
    index = done.groupby(["sampler", "nfe"])["fid"].idxmin()
    return done.loc[index.values].sort_values(["sampler", "nfe"])


def fid_axes(title: str, figsize: tuple[float, float] = FIGSIZE) -> tuple[Any, Any]:
    plt = _pyplot()
    with plt.rc_context({"font.size": FONT_SIZE}):
        fig, ax = plt.subplots(figsize=figsize)
    ax.set_title(title, fontsize=FONT_SIZE + 1)
    return fig, ax


def draw_sampler_lines(ax: Any, rows: Any, *, suffix: str = "", scale: float = 1.0) -> None:
    """One line per sampler through (nfe, fid), sorted by NFE, with +- ``scale`` x ``fid_err`` error bars
    when known (``scale`` = t quantile: an interval instead of one standard error)."""
    records = _records(rows)
    for sampler in sorted({str(r["sampler"]) for r in records}):
        pts = sorted((float(r["nfe"]), float(r["fid"]), scale * _err(r)) for r in records
                     if str(r["sampler"]) == sampler)
        nfe, fid, err = zip(*pts, strict=True)
        ax.errorbar(nfe, fid, yerr=err, marker="o", ms=4, capsize=3, lw=1.5, label=f"{sampler}{suffix}")


def _err(row: dict) -> float:
    value = row.get("fid_err")
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def draw_floor(ax: Any, floor: Floor | None) -> None:
    """The floor as a grey dashed line, its +- error as a band; labelled with its value and image count."""
    if floor is None:
        return
    ax.axhspan(max(floor.fid - floor.fid_err, 1e-9), floor.fid + floor.fid_err, color="0.5", alpha=0.2, lw=0)
    ax.axhline(floor.fid, color="0.35", ls="--", lw=1.2,
               label=f"{floor.label}: {floor.fid:.2f} ± {floor.fid_err:.2f} (n = {floor.num_images})")


def draw_published(ax: Any, points: Iterable[Any]) -> None:
    """Published numbers: black hollow markers (never a sampler colour), put on the plot's NFE axis by
    ``point.on_axis()`` (``edmbench.sampling.conventions.to_axis``) and labelled with the point's
    convention; a point whose NFE on this axis is not certain is drawn dashed, "~NFE" and its note in
    the label."""
    markers = "*DP^vs"
    for i, point in enumerate(points):
        nfe, exact, note = _on_axis(point)
        convention = getattr(point, "convention", None)
        stated = convention.label if convention is not None else "NFE convention not stated"
        label = f"{point.label} (published; {stated})" if exact else (
            f"{point.label} (published; ~NFE {nfe:g}: {note})")
        ax.scatter([nfe], [point.fid], marker=markers[i % len(markers)], s=90, facecolors="none",
                   edgecolors="black", linewidths=1.3, linestyles="solid" if exact else "dashed", zorder=4,
                   label=label)


def _on_axis(point: Any) -> tuple[float, bool, str]:
    """(NFE on the plot's axis, exact, note) of a published point."""
    if hasattr(point, "on_axis"):
        axis = point.on_axis()
        return float(axis.nfe), bool(axis.exact), str(axis.note)
    return float(point.nfe), False, "NFE convention not stated"


def draw_heldout(ax: Any, points: Iterable[HeldOut]) -> None:
    """Held-out confirmation results: filled black-edged squares at their NFE, the interval as error bars,
    each annotated with its role (e.g. "rank 1", "baseline"); one legend entry."""
    points = list(points)
    for i, p in enumerate(points):
        lo, hi = p.interval
        label = (f"held-out confirmation ({p.level:.0%} interval, n = {p.num_images:,} per setting)"
                 if i == 0 else None)
        ax.errorbar([p.nfe], [p.fid], yerr=[[p.fid - lo], [hi - p.fid]], fmt="s", ms=7, color="C3",
                    mec="black", capsize=4, lw=1.5, zorder=5, label=label)
        ax.annotate(p.role, (p.nfe, p.fid), xytext=(6, 4), textcoords="offset points",
                    fontsize=FONT_SIZE - 2, color="C3")


def finish_fid_axes(ax: Any, *, ylabel: str = "FID", log: bool = False, note: str = ERRORBAR_NOTE) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    from edmbench.sampling.conventions import AXIS_LABEL

    ax.set_xlabel(AXIS_LABEL, fontsize=FONT_SIZE)
    ax.set_ylabel(ylabel, fontsize=FONT_SIZE)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers (5, 10, 20), not 5x10^0
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        nfes = sorted({round(x) for line in ax.get_lines() if line.get_transform() == ax.transData
                       for x in line.get_xdata() if x > 0})  # data lines, not the floor's axhline
        if nfes:
            ticks = [nfes[0]]
            for x in nfes[1:]:  # labels closer than 15 % in NFE would overlap on a log axis
                if x >= ticks[-1] * 1.15:
                    ticks.append(x)
            ax.set_xticks(ticks)
            ax.set_xlim(nfes[0] / 1.2, nfes[-1] * 1.2)  # the floor's band must not stretch the NFE axis
    ax.tick_params(labelsize=FONT_SIZE)
    ax.grid(alpha=0.3, which="major")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=FONT_SIZE - 1, framealpha=0.9)
    if note:
        ax.annotate(note, xy=(1.0, -0.13), xycoords="axes fraction", ha="right", va="top",
                    fontsize=FONT_SIZE - 2, color="0.3")
    ax.figure.tight_layout()


def interval_scale(level: float = 0.95, groups: int = 10) -> float:
    """The jackknife-t quantile t_{K-1, (1+level)/2} that turns a standard error into an interval."""
    from edmbench.metrics.paired import _t_quantile

    return _t_quantile(groups - 1, level)


def fid_vs_nfe(table: Any, published: Iterable[Any] = (), *, floor: Floor | None = None,
               title: str = "FID vs NFE", full_count: int | None = None, heldout: Iterable[HeldOut] = (),
               level: float = 0.95, groups: int = 10) -> Any:
    """The best setting at each NFE per sampler among the trials that reached ``full_count`` images, with
    ``level`` jackknife-t intervals (plug-in FID +- t x fid_err, K = ``groups``); the held-out
    confirmation marked (:func:`draw_heldout`); the real-data floor and published points if known."""
    fig, ax = fid_axes(title)
    best = best_per_nfe(table, full_count)
    if not best.empty:
        n = f", n = {full_count:,}" if full_count else ""
        draw_sampler_lines(ax, best, suffix=f" (best per NFE, search stage{n})",
                           scale=interval_scale(level, groups))
    draw_floor(ax, floor)
    draw_published(ax, published)
    draw_heldout(ax, heldout)
    note = (f"error bars: {level:.0%} jackknife-t intervals (search stage: plug-in FID ± t·SE; held-out: "
            "bias-corrected mean)")
    finish_fid_axes(ax, note=note)
    return fig


def fid_nfe_pareto(table: Any, front: Any, *, title: str = "Pareto front: FID vs NFE") -> Any:
    """All COMPLETE trials as dots, the non-dominated ones joined as a step line."""
    fig, ax = fid_axes(title)
    done = table[table["state"] == "COMPLETE"]
    ax.scatter(done["nfe"], done["fid"], alpha=0.4, s=16, label="trials")
    ax.step(front["nfe"], front["fid"], where="post", color="C3", marker="o", ms=4, label="Pareto front")
    finish_fid_axes(ax, note="")
    return fig


# ---- Optuna's own views ----------------------------------------------------------------------------------

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
    numeric = numeric_params(study, params)  # a contour across categories (euler .. heun) would invent values
    if len(numeric) >= 2:
        views["contour"] = lambda: ovm.plot_contour(study, params=numeric[:2], target=target,
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


def numeric_params(study: Any, params: Sequence[str]) -> list[str]:
    """The searched knobs with an int or float distribution in the study's trials (not categorical)."""
    import optuna

    kinds: dict[str, bool] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            kinds[name] = not isinstance(dist, optuna.distributions.CategoricalDistribution)
    return [p for p in params if kinds.get(p)]


def _figure_of(axes: Any) -> Any:
    import numpy as np

    first = np.asarray(axes).ravel()[0] if isinstance(axes, np.ndarray) else axes
    return first.figure


# ---- sample grids ----------------------------------------------------------------------------------------

def upscale_factor(height: int, width: int, cell_px: int = CELL_PX) -> int:
    """The integer nearest-neighbour factor that brings a cell to about ``cell_px`` (8x8 -> 6, 64x64 -> 1)."""
    return max(1, round(cell_px / max(height, width)))


def image_grid(images: Any, ncols: int = 8, *, scale: int = 1, gap: int = 0, fill: int = 0) -> Any:
    """uint8 ``[B, C, H, W]`` -> one ``[rows*(H*scale+gap)-gap, ncols*(W*scale+gap)-gap, C]`` array: each
    image upscaled ``scale`` x by pixel repetition (square pixels stay square), ``gap``-pixel separators of
    value ``fill``; blank cells are ``fill`` too."""
    import numpy as np

    x = np.asarray(images)
    if x.ndim != 4 or x.dtype != np.uint8:
        raise ValueError(f"image_grid expects uint8 [B, C, H, W], got {x.dtype} {tuple(x.shape)}")
    b, c, h, w = x.shape
    x = x.repeat(scale, axis=2).repeat(scale, axis=3)
    ch, cw = h * scale, w * scale
    rows = -(-b // ncols)
    grid = np.full((rows * (ch + gap) - gap, ncols * (cw + gap) - gap, c), fill, dtype=np.uint8)
    for i in range(b):
        r, col = divmod(i, ncols)
        top, left = r * (ch + gap), col * (cw + gap)
        grid[top:top + ch, left:left + cw] = x[i].transpose(1, 2, 0)
    return grid


def seed_row_labels(seeds: Sequence[int], ncols: int = 8) -> list[str]:
    """``["seeds 0-7", "seeds 8-15", ...]`` for images drawn row by row from ``seeds``."""
    rows = [list(seeds[i:i + ncols]) for i in range(0, len(seeds), ncols)]
    return [f"seeds {r[0]}-{r[-1]}" if len(r) > 1 else f"seed {r[0]}" for r in rows]


def sample_grids(panels: Sequence[tuple[Any, ...]], ncols: int = 8, *,
                 row_labels: Sequence[str] | None = None, cmap: str = "gray",
                 suptitle: str | None = None) -> Any:
    """Side-by-side sample grids, e.g. ``[("best: ...", images), ("baseline: ...", images)]``: square pixels
    (integer upscale, ``aspect="equal"``, nearest-neighbour), 2-pixel separators, rows labelled on the left
    of the first panel (``row_labels``, e.g. :func:`seed_row_labels`) or of any panel given as
    ``(title, images, its_row_labels)``; sized for about 1:1 pixels at ``GRID_DPI``."""
    import numpy as np

    plt = _pyplot()
    first = np.asarray(panels[0][1])
    _, _, h, w = first.shape
    scale, gap = upscale_factor(h, w), 2
    grids = [image_grid(panel[1], ncols, scale=scale, gap=gap, fill=128) for panel in panels]
    gh, gw = max(g.shape[0] for g in grids), max(g.shape[1] for g in grids)
    rows = -(-len(first) // ncols)
    default = list(row_labels) if row_labels is not None else [""] * rows
    margin_w, margin_h = 0.9, 0.8 + (0.3 if suptitle else 0)  # inches for labels and titles
    fig, axes = plt.subplots(1, len(panels), squeeze=False, dpi=GRID_DPI,
                             figsize=(len(panels) * (gw / GRID_DPI + margin_w), gh / GRID_DPI + margin_h))
    for i, (ax, panel, grid) in enumerate(zip(axes[0], panels, grids, strict=True)):
        ax.imshow(grid[..., 0] if grid.shape[2] == 1 else grid, cmap=cmap, vmin=0, vmax=255,
                  interpolation="nearest", aspect="equal")
        ax.set_title(panel[0], fontsize=FONT_SIZE)
        labels = list(panel[2]) if len(panel) > 2 else default if i == 0 else [""] * rows
        centres = [r * (h * scale + gap) + h * scale / 2 for r in range(rows)]
        ax.set_yticks(centres, labels, fontsize=FONT_SIZE - 1)
        ax.set_xticks([])
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=FONT_SIZE)
    fig.tight_layout()
    return fig
