"""Search cost at NFE 6 on the embedded default: FID-driven search vs proxy-driven search (with and without
Optuna's WilcoxonPruner) + FID confirmation vs the GITS-style optimiser alone, side by side in one run.

    python benchmarks/bench_schedules.py [--trials 50] [--search-images 500] [--proxy-images 128]
                                         [--holdout-images 5000] [--out PATH.json]

Setting: digits-edm-uncond, ipndm, 6 steps (NFE 6, EDM end point), the 4 interior levels searched as knots
fractions (``edmbench.sampling.knots``), rho = 7 enqueued first in every search. The *best known* schedule is
the best of {rho = 7, logsnr, time_uniform, DP output} on the held-out seeds (100000 ..); the target is any
schedule whose held-out FID-digits is at most the upper end of that best's 95 % jackknife interval. Seeds:
search 0 .. ``search-images``, proxy 0 .. ``proxy-images`` (the teacher's seeds too), DP 0 .. ``dp-samples``;
held-out seeds are only used to check picks.

Routes (TPE, ``trials`` trials each, seed 0):

- ``fid_search``: each trial scored by FID-digits on the search seeds; incumbent = lowest FID so far;
- ``proxy_search``: each trial scored by teacher_l2 (per-seed distance to a Heun teacher) on the proxy seeds;
  incumbent = lowest teacher_l2 so far; final pick = the best FID-digits on the search seeds of the top 3;
- ``proxy_pruned``: the same with ``WilcoxonPruner`` on the per-seed distances (a pruned trial stops early);
- ``optimiser``: the DP schedule on ``dp-samples`` seeds; no search.

Counted: images generated and network calls (images x NFE; the teacher's and the optimiser's calls included;
held-out checks excluded, they are the benchmark's measuring stick). Two costs per route: *to reach* the
target (cumulative cost up to the first trial whose incumbent's held-out FID is within the target; for the
proxy routes plus one FID confirmation on the search seeds) and *full budget* (all trials + confirmation).
The pruning saving is also measured over ``--prune-repeats`` TPE seeds (images with vs without pruning and
the best teacher_l2 reached).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _schedule_search import (  # noqa: E402
    SIGMA_MAX,
    SIGMA_MIN,
    SearchTrial,
    best_complete,
    knots_config,
    proxy_knots_search,
)

NUM_STEPS = 6
SOLVER = "ipndm"
HOLDOUT_START = 100_000


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--search-images", type=int, default=500)
    p.add_argument("--proxy-images", type=int, default=128)
    p.add_argument("--holdout-images", type=int, default=5000)
    p.add_argument("--teacher-steps", type=int, default=64)
    p.add_argument("--dp-samples", type=int, default=256)
    p.add_argument("--dp-grid", type=int, default=60)
    p.add_argument("--dp-substeps", type=int, default=4)
    p.add_argument("--prune-repeats", type=int, default=5)
    p.add_argument("--out", default="benchmarks/bench_schedules_output.json")
    return p.parse_args(argv)


class Bench:
    """The model, extractor, reference and a held-out FID cache (by levels)."""

    def __init__(self, args: argparse.Namespace) -> None:
        import edmbench.digits.features  # noqa: F401 -- registers the digits-classifier extractor
        from edmbench import pretrained
        from edmbench.metrics.evaluate import resolve_extractor, resolve_reference
        from edmbench.resources import data_path

        self.args = args
        self.denoiser = pretrained.load("digits-edm-uncond")
        self.extractor, _ = resolve_extractor("digits-classifier", None, "cpu")
        self.reference = resolve_reference(data_path("pretrained/digits-train-stats.npz"))
        self.holdout = range(HOLDOUT_START, HOLDOUT_START + args.holdout_images)
        self._held: dict[tuple, dict] = {}

    def fid(self, levels, seeds):
        from edmbench.metrics.evaluate import score_rungs

        (rung,) = list(score_rungs(self.denoiser, knots_config(SOLVER, levels), seeds, self.extractor,
                                   self.reference, None, batch_size=500, class_policy=None))
        return rung

    def held_out(self, levels) -> dict:
        from edmbench.metrics.paired import single_estimate

        key = tuple(round(float(s), 12) for s in levels)
        if key not in self._held:
            rung = self.fid(levels, self.holdout)
            est = single_estimate(rung.fid, rung.fid_loo, rung.num_images)
            self._held[key] = {"fid": rung.fid, "interval": list(est.interval), "fid_loo": list(rung.fid_loo),
                               "sigmas": [float(s) for s in levels]}
        return self._held[key]


def _fid_search(bench: Bench) -> list[SearchTrial]:
    """TPE over the knots scored by FID-digits on the search seeds."""
    import optuna

    from edmbench.sampling.knots import knot_params, suggest_levels
    from edmbench.sampling.spacings import polynomial_levels

    args = bench.args
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    study.enqueue_trial(knot_params(polynomial_levels(NUM_STEPS, SIGMA_MIN, SIGMA_MAX, 7.0)))
    out = []
    for _ in range(args.trials):
        trial = study.ask()
        levels = suggest_levels(trial, NUM_STEPS, SIGMA_MIN, SIGMA_MAX).tolist()
        value = bench.fid(levels, range(args.search_images)).fid
        study.tell(trial, value)
        out.append(SearchTrial(levels, value, args.search_images, False))
    return out


def _trajectory(bench: Bench, trials: list[SearchTrial], target: float, extra_images: int) -> dict:
    """Incumbent after each trial, its held-out FID, and the cost when it first lies within the target."""
    best, steps, reached = None, [], None
    images = 0
    for i, t in enumerate(trials):
        images += t.images
        if not t.pruned and (best is None or t.value < best.value):
            best = t
        held = bench.held_out(best.levels)
        steps.append({"trial": i, "images": images, "incumbent_value": best.value,
                      "holdout_fid": held["fid"]})
        if reached is None and held["fid"] <= target:
            reached = {"trial": i, "images": images + extra_images,
                       "network_calls": (images + extra_images) * NUM_STEPS}
    return {"steps": steps, "reached": reached}


def _confirm(bench: Bench, trials: list[SearchTrial], top: int = 3) -> tuple[list[float], int]:
    """The best FID-digits on the search seeds among the ``top`` complete proxy trials; images used."""
    ranked = sorted((t for t in trials if not t.pruned), key=lambda t: t.value)[:top]
    seeds = range(bench.args.search_images)
    scored = sorted(((bench.fid(t.levels, seeds).fid, t.levels) for t in ranked), key=lambda p: p[0])
    return scored[0][1], top * bench.args.search_images


def _route(bench: Bench, trials: list[SearchTrial], target: float, pick, confirm_images: int,
           teacher_calls: int, teacher_images: int) -> dict:
    images = sum(t.images for t in trials)
    per_trial_confirm = bench.args.search_images if confirm_images else 0
    traj = _trajectory(bench, trials, target, per_trial_confirm)
    if traj["reached"] is not None:
        traj["reached"]["network_calls"] += teacher_calls
        traj["reached"]["images"] += teacher_images
    held = bench.held_out(pick)
    return {"images": images + confirm_images + teacher_images,
            "network_calls": (images + confirm_images) * NUM_STEPS + teacher_calls,
            "pruned_trials": sum(t.pruned for t in trials), "search_images": images, "pick": held,
            "reached_target": held["fid"] <= target, "to_reach": traj["reached"], "trajectory": traj["steps"]}


def _ratio(reach: dict | None, base: dict | None) -> float | None:
    return reach["network_calls"] / base["network_calls"] if reach and base else None


def _prune_repeats(bench: Bench, teacher) -> list[dict]:
    """Images and best teacher_l2 with and without WilcoxonPruner, over several TPE seeds."""
    args, out = bench.args, []
    for seed in range(args.prune_repeats):
        row = {"seed": seed}
        for prune in (False, True):
            found = proxy_knots_search(bench.denoiser, SOLVER, NUM_STEPS, range(args.proxy_images), teacher,
                                       trials=args.trials, prune=prune, seed=seed)
            key = "pruned" if prune else "unpruned"
            row[key] = {"images": sum(t.images for t in found), "best": best_complete(found).value,
                        "pruned_trials": sum(t.pruned for t in found)}
        row["image_ratio"] = row["pruned"]["images"] / row["unpruned"]["images"]
        print(f"prune repeat {seed}: images {row['unpruned']['images']} -> {row['pruned']['images']} "
              f"({row['image_ratio']:.3f}); best teacher_l2 {row['unpruned']['best']:.4f} vs "
              f"{row['pruned']['best']:.4f}", flush=True)
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    torch.set_num_threads(1)
    from edmbench.metrics.paired import paired_difference
    from edmbench.metrics.teacher import teacher_images
    from edmbench.sampling.optimise import optimise_schedule
    from edmbench.sampling.spacings import logsnr_levels, polynomial_levels, time_uniform_levels

    start = time.time()
    bench = Bench(args)
    opt = optimise_schedule(bench.denoiser, "euler", NUM_STEPS, num_samples=args.dp_samples,
                            grid_size=args.dp_grid, substeps=args.dp_substeps)
    known = {"rho7": polynomial_levels(NUM_STEPS, SIGMA_MIN, SIGMA_MAX, 7.0).tolist(),
             "logsnr": logsnr_levels(NUM_STEPS, SIGMA_MIN, SIGMA_MAX).tolist(),
             "time_uniform": time_uniform_levels(NUM_STEPS, SIGMA_MIN, SIGMA_MAX).tolist(),
             "dp": opt.levels.tolist()}
    known_scores = {name: bench.held_out(levels) for name, levels in known.items()}
    best_name = min(known_scores, key=lambda n: known_scores[n]["fid"])
    best = known_scores[best_name]
    target = best["interval"][1]
    print(f"best known: {best_name} held-out FID {best['fid']:.3f}; target <= {target:.3f} "
          f"(n = {args.holdout_images})", flush=True)

    teacher = teacher_images(bench.denoiser, range(args.proxy_images),
                             {"sampler": "heun", "num_steps": args.teacher_steps}, batch_size=500)
    teacher_calls = args.proxy_images * (2 * args.teacher_steps - 1)
    fid_trials = _fid_search(bench)
    methods = {"fid_search": _route(bench, fid_trials, target, min(fid_trials, key=lambda t: t.value).levels,
                                    0, 0, 0)}
    for name, prune in (("proxy_search", False), ("proxy_pruned", True)):
        found = proxy_knots_search(bench.denoiser, SOLVER, NUM_STEPS, range(args.proxy_images), teacher,
                                   trials=args.trials, prune=prune)
        pick, confirm = _confirm(bench, found)
        methods[name] = _route(bench, found, target, pick, confirm, teacher_calls, args.proxy_images)
    methods["optimiser"] = {"images": 0, "network_calls": opt.total_network_calls, "pick": known_scores["dp"],
                            "reached_target": known_scores["dp"]["fid"] <= target,
                            "to_reach": {"images": 0, "network_calls": opt.total_network_calls}
                            if known_scores["dp"]["fid"] <= target else None}
    for name, m in methods.items():
        d = paired_difference(m["pick"]["fid"], m["pick"]["fid_loo"], best["fid"], best["fid_loo"],
                              args.holdout_images)
        m["vs_best_known"] = {"difference": d.debiased, "interval": list(d.interval)}
        reach = m["to_reach"]
        reach_text = f"images {reach['images']} calls {reach['network_calls']}" if reach else "never"
        print(f"{name:13s}: full budget images {m['images']:7d} calls {m['network_calls']:9d}; held-out FID "
              f"{m['pick']['fid']:.3f} [{m['pick']['interval'][0]:.3f}, {m['pick']['interval'][1]:.3f}] "
              f"(vs best known {d.debiased:+.3f} [{d.interval[0]:+.3f}, {d.interval[1]:+.3f}]) "
              f"within target: {m['reached_target']}; to reach: {reach_text}", flush=True)
    base = methods["fid_search"]
    ratios = {name: {"network_calls_full": m["network_calls"] / base["network_calls"],
                     "network_calls_to_reach": _ratio(m["to_reach"], base["to_reach"])}
              for name, m in methods.items()}
    print("ratios to FID-driven search:", json.dumps(ratios))
    repeats = _prune_repeats(bench, teacher)
    ratio = np.array([r["image_ratio"] for r in repeats])
    print(f"WilcoxonPruner: proxy-search images x {ratio.mean():.3f} (min {ratio.min():.3f}, max "
          f"{ratio.max():.3f}) over {len(repeats)} TPE seeds")
    report = {"args": vars(args), "known": known_scores,
              "target": {"best_known": best_name, "fid_at_most": target}, "methods": methods,
              "ratios": ratios, "prune_repeats": repeats, "wall_time_s": time.time() - start}
    Path(args.out).write_text(json.dumps(report, indent=1))
    held = len(bench._held) * args.holdout_images
    print(f"wrote {args.out} ({report['wall_time_s']:.0f} s; held-out checks, not counted above: "
          f"{held} images)")


if __name__ == "__main__":
    main()
