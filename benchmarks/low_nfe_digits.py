"""Low-NFE schedules on the embedded default: searched/optimised schedules vs EDM's rho = 7; proxy quality.

    python benchmarks/low_nfe_digits.py [--num-images 5000] [--dp-samples 256]
                                        [--out docs/img/low-nfe-digits.json]

For NFE in {5, 6, 8, 10} and solvers x schedules (edm rho = 7, logsnr, time_uniform, the GITS-style DP
output), every configuration is scored on the same held-out seeds (10000 ..) by FID-digits
(leave-one-group-out values kept) and by the teacher distance ``teacher_l2`` (per seed, teacher Heun with
``--teacher-steps`` steps). Then:

- headline: per NFE, the best non-rho-7 schedule (lowest FID) against the best solver on rho = 7, as a paired
  jackknife interval of the FID difference (``edmbench.metrics.paired``; same seeds, same groups); the
  winner is picked on the same images it is scored on, so the interval is optimistic for it (stated);
- proxy quality: Spearman rank correlation between teacher_l2 and FID over all configurations, with a
  bootstrap interval over configurations (2,000 resamples).

The DP optimiser runs once per NFE on seeds 0 .. dp_samples-1 (disjoint from the scored seeds) with the
Euler / DDIM one-step cost, which is the cost matrix of every single-evaluation solver here (their first
step is that step), so one schedule serves euler, ipndm, dpmpp_2m and unipc. All network calls are
counted and printed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

NFES = (5, 6, 8, 10)
SOLVERS = ("euler", "ipndm", "dpmpp_2m", "unipc")
SCHEDULES = ("edm", "logsnr", "time_uniform", "dp")


def _config(solver: str, schedule: str, nfe: int, dp_levels: dict[int, list[float]]):
    from edmbench.sampling import SamplerConfig

    base = {"sampler": solver, "num_steps": nfe}
    if schedule == "dp":
        return SamplerConfig.from_dict({**base, "discretization": "knots", "sigmas": dp_levels[nfe]})
    return SamplerConfig.from_dict({**base, "discretization": schedule})


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _bootstrap(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    values = [_spearman(a[i], b[i]) for i in (rng.integers(0, len(a), len(a)) for _ in range(n))]
    return float(np.nanpercentile(values, 2.5)), float(np.nanpercentile(values, 97.5))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-images", type=int, default=5000)
    p.add_argument("--dp-samples", type=int, default=256)
    p.add_argument("--dp-grid", type=int, default=60)
    p.add_argument("--dp-substeps", type=int, default=4)
    p.add_argument("--teacher-steps", type=int, default=64)
    p.add_argument("--nfes", type=int, nargs="+", default=list(NFES))
    p.add_argument("--solvers", nargs="+", default=list(SOLVERS))
    p.add_argument("--schedules", nargs="+", default=list(SCHEDULES))
    p.add_argument("--out", default="docs/img/low-nfe-digits.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    import edmbench.digits.features  # noqa: F401 -- registers the digits-classifier extractor
    from edmbench import pretrained
    from edmbench.metrics.evaluate import resolve_extractor, resolve_reference, score_rungs
    from edmbench.metrics.paired import paired_difference
    from edmbench.metrics.teacher import TeacherMeter, teacher_images
    from edmbench.resources import data_path
    from edmbench.sampling.optimise import optimise_schedule

    start = time.time()
    denoiser = pretrained.load("digits-edm-uncond")
    extractor, _ = resolve_extractor("digits-classifier", None, "cpu")
    reference = resolve_reference(data_path("pretrained/digits-train-stats.npz"))
    seeds = range(10_000, 10_000 + args.num_images)
    teacher = {"sampler": "heun", "num_steps": args.teacher_steps}
    teach = teacher_images(denoiser, seeds, teacher, batch_size=500)
    calls = {"teacher": (2 * args.teacher_steps - 1) * len(seeds)}
    dp_levels, dp_info = {}, {}
    if "dp" in args.schedules:
        for nfe in args.nfes:
            opt = optimise_schedule(denoiser, "euler", nfe, num_samples=args.dp_samples,
                                    grid_size=args.dp_grid, substeps=args.dp_substeps)
            dp_levels[nfe] = opt.levels.tolist()
            dp_info[nfe] = {"sigmas": opt.sigmas, "cost": opt.cost, "rho7_cost": opt.rho7_cost,
                            "network_calls_total": opt.total_network_calls}
            calls[f"dp_{nfe}"] = opt.total_network_calls
            print(f"DP NFE {nfe}: {[round(s, 4) for s in opt.sigmas]}  ({opt.total_network_calls} calls)",
                  flush=True)
    rows = []
    for nfe in args.nfes:
        for schedule in args.schedules:
            for solver in args.solvers:
                config = _config(solver, schedule, nfe, dp_levels)
                meter = TeacherMeter(teach)
                (rung,) = list(score_rungs(denoiser, config, seeds, extractor, reference, None,
                                           batch_size=500, class_policy=None, meters={"teacher_l2": meter}))
                score = rung.extra["teacher_l2"]
                rows.append({"nfe": config.nfe, "solver": solver, "schedule": schedule, "fid": rung.fid,
                             "fid_err": rung.fid_err, "fid_loo": list(rung.fid_loo),
                             "teacher_l2": score.value, "teacher_l2_err": score.err,
                             "num_images": rung.n})
                calls[f"{solver}-{schedule}-{nfe}"] = config.nfe * len(seeds)
                print(f"NFE {config.nfe:2d} {solver:9s} {schedule:12s} FID {rung.fid:8.3f} "
                      f"± {rung.fid_err:.3f}  teacher_l2 {score.value:.4f}", flush=True)
    headline = []
    for nfe in args.nfes:
        at = [r for r in rows if r["nfe"] == nfe]
        base = min((r for r in at if r["schedule"] == "edm"), key=lambda r: r["fid"], default=None)
        other = min((r for r in at if r["schedule"] != "edm"), key=lambda r: r["fid"], default=None)
        if base is None or other is None:
            continue
        d = paired_difference(other["fid"], other["fid_loo"], base["fid"], base["fid_loo"], len(seeds))
        headline.append({"nfe": nfe, "best_other": f"{other['solver']}/{other['schedule']}",
                         "best_rho7": f"{base['solver']}/edm", "fid_other": other["fid"],
                         "fid_rho7": base["fid"],
                         "difference": d.debiased, "interval": list(d.interval), "verdict": d.verdict()})
        print(f"NFE {nfe}: {headline[-1]['best_other']} {other['fid']:.3f} vs {headline[-1]['best_rho7']} "
              f"{base['fid']:.3f}: difference {d.debiased:.3f} [{d.interval[0]:.3f}, {d.interval[1]:.3f}] "
              f"-> {d.verdict()} (n = {len(seeds)})", flush=True)
    fid = np.array([r["fid"] for r in rows])
    prox = np.array([r["teacher_l2"] for r in rows])
    rho, ci = _spearman(fid, prox), _bootstrap(fid, prox)
    print(f"Spearman(teacher_l2, FID-digits) over {len(rows)} configurations at n = {len(seeds)}: "
          f"{rho:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] (bootstrap 95 %)")
    total = sum(calls.values())
    print(f"network calls (per-image evaluations): {total}; wall {time.time() - start:.0f} s")
    out = {"args": vars(args), "rows": rows, "headline": headline, "dp": dp_info,
           "spearman": {"rho": rho, "interval": ci, "num_configs": len(rows)}, "network_calls": calls,
           "wall_time_s": time.time() - start}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
