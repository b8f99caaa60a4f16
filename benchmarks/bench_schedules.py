"""Search cost at NFE 6 on the embedded default: FID-driven search vs proxy-driven search + FID
confirmation vs the GITS-style optimiser alone, side by side in one run.

    python benchmarks/bench_schedules.py [--trials 30] [--search-images 500] [--proxy-images 64]
                                         [--holdout-images 2000] [--out docs/img/bench-schedules.json]

Setting: digits-edm-uncond, ipndm, 6 steps (NFE 6, EDM end point), the 4 interior levels searched as knots
fractions (``edmbench.sampling.knots``). The *best known* schedule is the best of {rho = 7, logsnr, DP output}
on the held-out seeds (100000 ..); the target is any schedule whose held-out FID-digits lies within that
best's 95 % jackknife interval (i.e. <= its upper end). Each method's pick is checked on the same held-out
seeds; counted are the images generated and the network calls (images x NFE, teacher and optimiser
included):

- FID-driven: TPE over the knots, each trial scored by FID-digits on ``search-images`` seeds (0 ..); pick =
  best.
- proxy-driven: TPE over the knots scored by teacher_l2 (per-seed distance to a Heun teacher) on
  ``proxy-images`` seeds, the top 3 then confirmed by FID-digits on ``search-images`` seeds; pick = best FID.
- optimiser: the DP schedule (``edmbench.sampling.optimise``) on ``dp-samples`` seeds; no search.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

NUM_STEPS = 6
SOLVER = "ipndm"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--search-images", type=int, default=500)
    p.add_argument("--proxy-images", type=int, default=64)
    p.add_argument("--holdout-images", type=int, default=2000)
    p.add_argument("--teacher-steps", type=int, default=32)
    p.add_argument("--dp-samples", type=int, default=256)
    p.add_argument("--dp-grid", type=int, default=60)
    p.add_argument("--dp-substeps", type=int, default=4)
    p.add_argument("--out", default="docs/img/bench-schedules.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    import optuna

    import edmbench.digits.features  # noqa: F401 -- registers the digits-classifier extractor
    from edmbench import pretrained
    from edmbench.metrics.evaluate import resolve_extractor, resolve_reference, score_rungs
    from edmbench.metrics.paired import single_estimate
    from edmbench.metrics.teacher import TeacherMeter, teacher_images
    from edmbench.resources import data_path
    from edmbench.sampling import SamplerConfig
    from edmbench.sampling.knots import knot_params, suggest_levels
    from edmbench.sampling.optimise import optimise_schedule
    from edmbench.sampling.spacings import logsnr_levels, polynomial_levels

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.time()
    denoiser = pretrained.load("digits-edm-uncond")
    extractor, _ = resolve_extractor("digits-classifier", None, "cpu")
    reference = resolve_reference(data_path("pretrained/digits-train-stats.npz"))
    search_seeds = range(args.search_images)
    proxy_seeds = range(args.proxy_images)
    holdout = range(100_000, 100_000 + args.holdout_images)

    def config(levels) -> SamplerConfig:
        return SamplerConfig.from_dict({"sampler": SOLVER, "num_steps": NUM_STEPS, "discretization": "knots",
                                        "sigmas": [float(s) for s in levels]})

    def fid(levels, seeds, meters=None):
        (rung,) = list(score_rungs(denoiser, config(levels), seeds, extractor, reference, None,
                                   batch_size=500, class_policy=None, meters=meters))
        return rung

    def held_out(levels) -> dict:
        rung = fid(levels, holdout)
        est = single_estimate(rung.fid, rung.fid_loo, rung.n)
        return {"fid": rung.fid, "interval": list(est.interval), "sigmas": [float(s) for s in levels]}

    def search(score, seeds_per_trial: int) -> tuple[list, int]:
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
        study.enqueue_trial(knot_params(polynomial_levels(NUM_STEPS, 0.002, 80.0, 7.0)))
        found = []
        for _ in range(args.trials):
            trial = study.ask()
            levels = suggest_levels(trial, NUM_STEPS, 0.002, 80.0)
            value = score(levels)
            study.tell(trial, value)
            found.append((value, levels))
        return sorted(found, key=lambda t: t[0]), args.trials * seeds_per_trial

    report: dict = {"args": vars(args)}
    # the optimiser alone
    opt = optimise_schedule(denoiser, "euler", NUM_STEPS, num_samples=args.dp_samples, grid_size=args.dp_grid,
                            substeps=args.dp_substeps)
    dp_levels = opt.levels
    # the best known schedule and the target
    known = {"rho7": polynomial_levels(NUM_STEPS, 0.002, 80.0, 7.0),
             "logsnr": logsnr_levels(NUM_STEPS, 0.002, 80.0), "dp": dp_levels}
    known_scores = {name: held_out(levels) for name, levels in known.items()}
    best_name = min(known_scores, key=lambda n: known_scores[n]["fid"])
    target = known_scores[best_name]["interval"][1]
    report["known"] = known_scores
    report["target"] = {"best_known": best_name, "fid_at_most": target}
    print(f"best known: {best_name} held-out FID {known_scores[best_name]['fid']:.3f}; "
          f"target <= {target:.3f} (n = {args.holdout_images})", flush=True)

    # FID-driven search
    ranked, images = search(lambda lv: fid(lv, search_seeds).fid, args.search_images)
    fid_pick = held_out(ranked[0][1])
    methods = {"fid_search": {"images": images, "network_calls": images * NUM_STEPS, "pick": fid_pick}}
    # proxy-driven search + FID confirmation of the top 3
    teach = teacher_images(denoiser, proxy_seeds, {"sampler": "heun", "num_steps": args.teacher_steps})

    def proxy(levels) -> float:
        meter = TeacherMeter(teach)
        fid(levels, proxy_seeds, {"teacher_l2": meter})  # FID here is unused; the meter is what counts
        return meter.result().value

    ranked, images = search(proxy, args.proxy_images)
    confirmed = sorted(((fid(lv, search_seeds).fid, lv) for _, lv in ranked[:3]), key=lambda t: t[0])
    confirm_images = 3 * args.search_images
    teacher_calls = args.proxy_images * (2 * args.teacher_steps - 1)
    methods["proxy_search"] = {"images": images + confirm_images + args.proxy_images,
                               "network_calls": (images + confirm_images) * NUM_STEPS + teacher_calls,
                               "pick": held_out(confirmed[0][1])}
    methods["optimiser"] = {"images": 0, "network_calls": opt.total_network_calls, "pick": known_scores["dp"]}
    for name, m in methods.items():
        m["reached_target"] = m["pick"]["fid"] <= target
        print(f"{name:13s}: images {m['images']:7d}  network calls {m['network_calls']:9d}  held-out FID "
              f"{m['pick']['fid']:.3f} [{m['pick']['interval'][0]:.3f}, {m['pick']['interval'][1]:.3f}]  "
              f"within target: {m['reached_target']}", flush=True)
    base = methods["fid_search"]["network_calls"]
    for name, m in methods.items():
        print(f"network calls relative to FID-driven search: {name} {m['network_calls'] / base:.3f}")
    report["methods"] = methods
    report["wall_time_s"] = time.time() - start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out} ({report['wall_time_s']:.0f} s; held-out checks not counted above: "
          f"{(len(known) + 2) * args.holdout_images} images)")


if __name__ == "__main__":
    main()
