"""Search efficiency on the embedded default: TPE with pruning against the exhaustive grid, same space.

Both searches score every trial on the same seeds (common random numbers), so their FIDs are comparable.
Printed: the images TPE generated until its best FID was within the grid optimum's error bar, as a fraction
of the images the grid generated (goal <= 20%), and the final FIDs of both bests, also re-scored on a fresh
seed range.

    python benchmarks/bench_search.py [--model digits-edm-uncond] [--tpe-trials 24] [--images 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from edmbench.study import results
from edmbench.study.objective import make_scorer
from edmbench.study.runner import RunOptions, run_study
from edmbench.study.spec import parse_spec
from edmbench.study.storage import open_storage

SPACE = """
[fixed]
sampler = "heun"

[space.num_steps]
type = "int"
low = 4
high = 22
step = 3

[space.rho]
type = "float"
low = 2.0
high = 12.0
step = 2.0
"""


def spec_text(name: str, model: str, images: int, search: str, n_trials: int, pruner: str) -> str:
    return f"""
[study]
name = "{name}"

[denoiser]
model = "{model}"
class_policy = "none"

[metric]
extractor = "digits-classifier"
reference = "pretrained/digits-train-stats.npz"
num_images = {images}
rungs = [{images // 4}, {images // 2}]

[search]
{search}

[pruner]
type = "{pruner}"
n_startup_trials = 4

[budget]
n_trials = {n_trials}
{SPACE}
"""


def run(text: str, folder: Path) -> tuple[object, object, float]:
    spec = parse_spec(text)
    options = RunOptions(storage=f"journal:{folder / spec.name}.log", runs_dir=str(folder), progress=False)
    start = time.perf_counter()
    run_study(spec, options)
    import optuna

    study = optuna.load_study(study_name=spec.name, storage=open_storage(options.storage_url(spec)))
    return spec, results.trials_table(study, spec), time.perf_counter() - start


def images_until(table, target: float) -> int | None:
    """Images generated, in trial order, until a COMPLETE trial reaches FID <= target."""
    used = 0
    for _, row in table.sort_values("number").iterrows():
        used += int(row["num_images"]) if row["num_images"] == row["num_images"] else 0
        if row["state"] == "COMPLETE" and row["fid"] <= target:
            return used
    return None


def rescore_fid(spec, scorer, row, seed_start: int) -> float:
    from edmbench.study.record import sampler_config

    config = sampler_config(spec.fixed, {"num_steps": int(row["num_steps"]), "rho": float(row["rho"])})
    seeds = range(seed_start, seed_start + spec.metric.num_images)
    _, scores = list(scorer.score(config, seeds, ()))[-1]
    return scores["fid"].value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-edm-uncond")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--tpe-trials", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # the grid is exhaustive: every point scored on every image, no pruning
        grid_text = spec_text("grid", args.model, args.images, 'sampler = "grid"', 1, "none")
        grid_spec, grid, grid_s = run(grid_text, folder)
        tpe_search = 'sampler = "tpe"\nseed = 0\nn_startup_trials = 6'
        tpe_text = spec_text("tpe", args.model, args.images, tpe_search, args.tpe_trials, "median")
        tpe_spec, tpe, tpe_s = run(tpe_text, folder)
        g_best, t_best = results.best_row(grid, grid_spec), results.best_row(tpe, tpe_spec)
        target = g_best["fid"] + (g_best["fid_err"] or 0.0)
        grid_images = int(grid["num_images"].sum())
        reached = images_until(tpe, target)
        scorer = make_scorer(grid_spec)
        fresh = {name: rescore_fid(grid_spec, scorer, row, 10_000) for name, row in (("grid", g_best),
                                                                                     ("tpe", t_best))}
    print(f"model {args.model}, {args.images} images per trial, space num_steps 4..22 step 3 x rho 2..12 "
          "step 2 (heun)")
    print(f"grid: {len(grid)} trials ({(grid['state'] == 'PRUNED').sum()} pruned), {grid_images} images, "
          f"{grid_s:.0f} s; best FID {g_best['fid']:.3f} +- {g_best['fid_err']:.3f} at num_steps "
          f"{g_best['num_steps']}, rho {g_best['rho']:g}")
    tpe_images = int(tpe["num_images"].sum())
    print(f"tpe : {len(tpe)} trials ({(tpe['state'] == 'PRUNED').sum()} pruned), {tpe_images} "
          f"images, {tpe_s:.0f} s; best FID {t_best['fid']:.3f} +- {t_best['fid_err']:.3f} at num_steps "
          f"{t_best['num_steps']}, rho {t_best['rho']:g}")
    if reached is None:
        print(f"tpe never came within the grid optimum's error bar (FID <= {target:.3f})")
    else:
        print(f"images until tpe within the grid optimum's error bar (FID <= {target:.3f}): {reached} = "
              f"{reached / grid_images:.1%} of the grid's images (goal <= 20%)")
    exact = images_until(tpe, g_best["fid"])
    print("images until tpe matched the grid's best FID itself: "
          + (f"{exact} = {exact / grid_images:.1%} of the grid's images" if exact else "never"))
    print(f"final FIDs re-scored on fresh seeds 10000-{10000 + args.images - 1}: "
          f"grid best {fresh['grid']:.3f}, tpe best {fresh['tpe']:.3f}")


if __name__ == "__main__":
    main()
