"""What can be checked of each figure type edmbench writes (issue 12), by inspecting matplotlib's artists:
sample grids keep square pixels and label rows; FID-vs-NFE draws one line per sampler with error bars, the
real-data floor and published points in their own style."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

from edmbench import plots  # noqa: E402


def _digits(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8)


def test_image_grid_upscales_by_pixel_repetition():
    x = _digits(3)
    grid = plots.image_grid(x, ncols=2, scale=6, gap=2, fill=128)
    assert grid.shape == (2 * 48 + 2, 2 * 48 + 2, 1)  # rows*(H*scale+gap)-gap, cols*(W*scale+gap)-gap
    cell = grid[:48, 50:98, 0]  # image 1
    assert np.array_equal(cell, np.kron(x[1, 0], np.ones((6, 6), dtype=np.uint8)))  # square 6x6 blocks
    assert (grid[48:50] == 128).all() and (grid[50:, 50:] == 128).all()  # separator and the blank cell
    assert plots.upscale_factor(8, 8) == 6 and plots.upscale_factor(64, 64) == 1
    with pytest.raises(ValueError, match="uint8"):
        plots.image_grid(x.astype(np.float32))


def test_sample_grid_pixels_are_square_on_the_page():
    labels = plots.seed_row_labels(range(32))
    assert labels == ["seeds 0-7", "seeds 8-15", "seeds 16-23", "seeds 24-31"]
    fig = plots.sample_grids([("best", _digits(32)), ("baseline", _digits(32, 1))], row_labels=labels)
    fig.canvas.draw()
    for ax in fig.axes:
        (image,) = [a for a in ax.get_children() if isinstance(a, AxesImage)]
        rows, cols = image.get_array().shape[:2]
        box = ax.get_window_extent()  # on-page pixels of the image area
        assert box.width / cols == pytest.approx(box.height / rows, rel=0.02)  # square pixels
        assert image.get_interpolation() == "nearest"
        # about 1:1 at the saved dpi: each source pixel of the 8x8 digits covers ~6 page pixels
        assert box.width / cols == pytest.approx(1.0, rel=0.25)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == labels
    assert fig.axes[0].get_title() == "best" and fig.axes[1].get_title() == "baseline"


def _table() -> pd.DataFrame:
    rows = [dict(sampler=s, nfe=n, fid=f, fid_err=0.1 * f, state="COMPLETE")
            for s, pts in (("euler", ((5, 90.0), (9, 40.0))), ("heun", ((5, 60.0), (9, 20.0), (9, 25.0))))
            for n, f in pts]
    rows.append(dict(sampler="heun", nfe=19, fid=5.0, fid_err=0.5, state="PRUNED"))  # not drawn
    return pd.DataFrame(rows)


def _published():
    from edmbench.sampling.conventions import PointConvention
    from edmbench.study._sections import PublishedPoint

    return [PublishedPoint("EDM Table 2", 35, 1.97, "paper", PointConvention("zero", False)),
            PublishedPoint("iPNDM", 5, 30.0, "paper", PointConvention("sigma_min", None))]


def test_fid_vs_nfe_draws_lines_intervals_floor_and_published_points():
    t = plots.interval_scale(0.95, 10)  # t_{9, 0.975} = 2.262 (scipy stdtrit)
    assert t == pytest.approx(2.2622, abs=1e-4)
    table = _table()
    table["num_images"] = 500
    table.loc[(table["sampler"] == "heun") & (table["fid"] == 20.0), "num_images"] = 250  # not full count
    heldout = [plots.HeldOut(9, 21.0, (20.0, 22.5), 2000, "rank 1"),
               plots.HeldOut(19, 23.0, (22.0, 24.0), 2000, "baseline")]
    fig = plots.fid_vs_nfe(table, _published(), floor=plots.Floor(3.779, 2.081, 719), full_count=500,
                           heldout=heldout)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    heun_label = "heun (best per NFE, search stage, n = 500)"
    assert "euler (best per NFE, search stage, n = 500)" in labels and heun_label in labels
    heun = next(c for c in ax.containers if c.get_label() == heun_label)
    line, _, (bars,) = heun.lines
    # best per NFE among full-count trials: the 20.0 trial stopped at 250 images, so 25.0 is drawn at NFE 9
    assert list(line.get_xdata()) == [5.0, 9.0] and list(line.get_ydata()) == [60.0, 25.0]
    assert isinstance(bars, LineCollection)
    spans = [tuple(seg[:, 1]) for seg in bars.get_segments()]
    assert spans == [pytest.approx((60 - 6 * t, 60 + 6 * t)), pytest.approx((25 - 2.5 * t, 25 + 2.5 * t))]
    floor = [lab for lab in labels if lab.startswith("real-data floor")]
    assert floor == ["real-data floor: 3.78 ± 2.08 (n = 719)"]
    stars = [c for c in ax.collections if isinstance(c, PathCollection) and "published" in c.get_label()]
    exact, flagged = stars
    assert exact.get_label() == "EDM Table 2 (published; zero, no AFS, NFE counts calls)"
    assert flagged.get_label().startswith("iPNDM (published; ~NFE 5: ") and "AFS use unverified" in \
        flagged.get_label()
    assert exact.get_linestyle()[0][1] is None and flagged.get_linestyle()[0][1] is not None  # dashed
    assert np.allclose(exact.get_offsets(), [[35, 1.97]])
    assert exact.get_facecolors().size == 0 or exact.get_facecolors()[0, 3] == 0  # hollow
    assert np.allclose(exact.get_edgecolors()[0][:3], 0.0)  # black: not a sampler colour
    held = [c for c in ax.containers if c.get_label().startswith("held-out confirmation")]
    assert [c.get_label() for c in held] == ["held-out confirmation (95% interval, n = 2,000 per setting)"]
    marks = [c for c in ax.containers if c not in held and c.get_label().startswith("_")]  # the second point
    ys = sorted(float(c.lines[0].get_ydata()[0]) for c in [*held, *marks])
    assert ys == [21.0, 23.0]
    (seg,) = held[0].lines[2][0].get_segments()
    assert tuple(seg[:, 1]) == pytest.approx((20.0, 22.5))  # the held-out interval, asymmetric
    texts = [t.get_text() for t in ax.texts]
    assert "rank 1" in texts and "baseline" in texts
    assert any(t.startswith("error bars: 95% jackknife-t intervals") for t in texts)
    assert ax.get_xlabel() == "NFE (network calls per image, counted)" and ax.get_ylabel() == "FID"


def test_digits_sampler_plot_has_floor_and_plain_nfe_ticks(tmp_path):
    from edmbench.digits.plots import sampler_plot

    rows = [dict(r, num_images=719) for r in _table().to_dict("records") if r["state"] == "COMPLETE"]
    floor = SimpleNamespace(fid=3.779, fid_err=2.081, num_images=719)  # a FloorResult (digits.evaluate)
    path = sampler_plot(rows, floor, tmp_path / "samplers.png")
    assert path.stat().st_size > 0
    fig = plots.fid_axes("t")[0]  # the same pieces, inspected
    ax = fig.axes[0]
    plots.draw_sampler_lines(ax, rows)
    plots.draw_floor(ax, plots.Floor(3.779, 2.081, 719))
    plots.finish_fid_axes(ax, log=True)
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "9"]
    assert ax.get_xlim()[0] > 1  # the floor's band does not stretch the NFE axis
