"""Low-NFE schedules on the embedded default: searched/optimised schedules vs EDM's rho = 7, on held-out
seeds; proxy quality (teacher distance vs FID).

    python benchmarks/low_nfe_digits.py [--num-images 5000] [--holdout-images 5000] [--dp-samples 256]
                                        [--out benchmarks/low_nfe_digits_output.json]

Seed ranges (disjoint): schedule construction 0 .. (the DP optimiser on ``dp-samples`` seeds, the knots
search on ``knots-images`` seeds), search seeds 10000 .. (``num-images``: every configuration scored, the
winners picked, the proxy correlation measured), held-out seeds 20000 .. (``holdout-images``: only the
winners, re-scored).

For NFE in {5, 6, 8, 10} (EDM end point, NFE = num_steps) and solvers x schedules: ``edm`` (rho = 7),
``logsnr``, ``time_uniform``, ``dp`` (the GITS-style optimiser, Euler one-step cost: the cost matrix of every
single-evaluation solver here, so one schedule serves all four) and ``knots`` (TPE over the knots fractions
scored by teacher_l2 with ``--knots-solver``, ``WilcoxonPruner`` on the per-seed distances; one schedule per
NFE, applied to every solver). Every configuration gets FID-digits (grouped-jackknife leave-one-out values)
and the teacher distance ``teacher_l2`` (per seed, teacher Heun ``--teacher-steps``) on the search seeds.

- headline: per NFE, the best *searched or optimised* configuration (schedule dp or knots, any solver) and the
  best solver on rho = 7, both picked by FID on the search seeds, then re-scored on the held-out seeds: the
  paired jackknife interval of the held-out FID difference (``edmbench.metrics.paired``);
- proxy quality: Spearman rank correlation between teacher_l2 and FID over all configurations on the search
  seeds, with (i) a bootstrap interval over configurations and (ii) a grouped jackknife interval over the
  10 seed groups (each group left out of both FID and teacher_l2).

Resumable: finished pieces are kept in ``--cache`` (JSON) and teacher images in ``benchmarks/_cache/``.
Network calls are counted and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _schedule_search import best_complete, knots_config, proxy_knots_search  # noqa: E402

NFES = (5, 6, 8, 10)
SOLVERS = ("euler", "ipndm", "dpmpp_2m", "unipc")
SCHEDULES = ("edm", "logsnr", "time_uniform", "dp", "knots")
SEARCHED = ("dp", "knots")
SEARCH_START, HOLDOUT_START = 10_000, 20_000
GROUPS = 10


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def _bootstrap(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap over configurations (pairs resampled with replacement)."""
    rng = np.random.default_rng(seed)
    values = [_spearman(a[i], b[i]) for i in (rng.integers(0, len(a), len(a)) for _ in range(n))]
    return float(np.nanpercentile(values, 2.5)), float(np.nanpercentile(values, 97.5))


def _jackknife_groups(fid_loo: np.ndarray, prox_loo: np.ndarray, full: float) -> dict:
    """Grouped jackknife over seed groups of Spearman(FID, proxy): loo arrays are [configs, K]."""
    from edmbench.metrics.paired import single_estimate

    loo = [_spearman(fid_loo[:, k], prox_loo[:, k]) for k in range(fid_loo.shape[1])]
    est = single_estimate(full, loo, 0)
    return {"debiased": est.debiased, "interval": list(est.interval), "loo": loo}


class Cache:
    """A JSON dict on disk, rewritten after every new entry."""

    def __init__(self, path: Path, args: dict, merge: list[Path] = ()) -> None:
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}
        for other in merge:
            self.data.update(json.loads(other.read_text()))
        if self.data.get("args", args) != args:
            raise SystemExit(f"{path} was made with other arguments; delete it or pass --cache elsewhere")
        self.data["args"] = args

    def get(self, key: str, make):
        if key not in self.data:
            self.data[key] = make()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data))
        return self.data[key]


class Items:
    """One JSON file per finished piece in ``root``; a piece is claimed (an exclusive ``.claim`` file) by the
    process computing it, so several processes of this script share the work (``--workers``-free
    parallelism: start the same command more than once). A dead process leaves its claim: delete it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str, suffix: str = ".json") -> Path:
        return self.root / (key.replace("/", "__") + suffix)

    def _load(self, key: str):
        path = self._path(key)
        return json.loads(path.read_text()) if path.exists() else None

    def _claim(self, key: str) -> bool:
        try:
            os.close(os.open(self._path(key, ".claim"), os.O_CREAT | os.O_EXCL))
            return True
        except FileExistsError:
            return False

    def stored(self, keys) -> dict:
        """The pieces of ``keys`` already stored (nothing is made)."""
        return {k: v for k, v in ((k, self._load(k)) for k in keys) if v is not None}

    def gather(self, makers: dict, wait: bool = True) -> dict:
        """``{key: make()}``: pieces already stored are read, unclaimed ones made here, the others awaited
        (``wait``) or left out."""
        out = {}
        for key, make in makers.items():
            value = self._load(key)
            if value is None and self._claim(key):
                value = make()
                tmp = self._path(key, ".tmp")
                tmp.write_text(json.dumps(value))
                tmp.rename(self._path(key))
            if value is not None:
                out[key] = value
        for key in makers if wait else ():
            while key not in out:
                value = self._load(key)
                if value is None:
                    time.sleep(5)
                else:
                    out[key] = value
        return out


def _teacher(denoiser, seeds: range, steps: int, name: str) -> dict[int, torch.Tensor]:
    from edmbench.metrics.teacher import teacher_images

    path = Path("benchmarks/_cache") / f"teacher-heun{steps}-{seeds.start}-{seeds.stop}.pt"
    lock = path.with_suffix(".lock")  # another process of this script is computing it: wait for the file
    while lock.exists() and not path.exists():
        time.sleep(10)
    if path.exists():
        return torch.load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock.touch()
    images = dict(teacher_images(denoiser, seeds, {"sampler": "heun", "num_steps": steps}, model=name,
                                 batch_size=500))
    torch.save(images, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").rename(path)  # whole or absent: a waiting process never reads half a file
    lock.unlink()
    return images


def _config(solver: str, schedule: str, nfe: int, built: dict):
    from edmbench.sampling import SamplerConfig

    if schedule in SEARCHED:
        return knots_config(solver, built[f"{schedule}_{nfe}"]["levels"])
    return SamplerConfig.from_dict({"sampler": solver, "num_steps": nfe, "discretization": schedule})


def _build_schedules(args, cache: Cache, denoiser, knots_teacher) -> dict:
    """The DP and knots schedules per NFE (on seeds 0 ..), with their network calls."""
    from edmbench.sampling.optimise import optimise_schedule

    built = {}
    for nfe in args.nfes:
        def dp(nfe=nfe) -> dict:
            opt = optimise_schedule(denoiser, "euler", nfe, num_samples=args.dp_samples,
                                    grid_size=args.dp_grid, substeps=args.dp_substeps)
            return {"levels": opt.levels.tolist(), "cost": opt.cost, "rho7_cost": opt.rho7_cost,
                    "network_calls": opt.total_network_calls}

        def knots(nfe=nfe) -> dict:
            found = proxy_knots_search(denoiser, args.knots_solver, nfe, range(args.knots_images),
                                       knots_teacher, trials=args.knots_trials, prune=True,
                                       batch_size=32)
            best = best_complete(found)
            images = sum(t.images for t in found)
            return {"levels": best.levels, "teacher_l2": best.value, "images": images,
                    "pruned_trials": sum(t.pruned for t in found), "network_calls": images * nfe}

        for name, make in (("dp", dp), ("knots", knots)):
            if name in args.schedules:
                built[f"{name}_{nfe}"] = cache.get(f"{name}_{nfe}", make)
                b = built[f"{name}_{nfe}"]
                print(f"{name} NFE {nfe}: {[round(s, 4) for s in b['levels']]} ({b['network_calls']} calls)",
                      flush=True)
    return built


def _score(denoiser, extractor, reference, config, seeds: range, teacher=None) -> dict:
    from edmbench.metrics.evaluate import score_rungs
    from edmbench.metrics.paired import loo_from_per_seed
    from edmbench.metrics.teacher import TeacherMeter

    meters = {"teacher_l2": TeacherMeter(teacher)} if teacher is not None else None
    (rung,) = list(score_rungs(denoiser, config, seeds, extractor, reference, None, batch_size=500,
                               class_policy=None, meters=meters, groups=GROUPS))
    row = {"nfe": config.nfe, "fid": rung.fid, "fid_err": rung.fid_err, "fid_loo": list(rung.fid_loo),
           "num_images": rung.num_images}
    if teacher is not None:
        score = rung.extra["teacher_l2"]
        mean, loo = loo_from_per_seed(score.per_seed, list(seeds), GROUPS)
        row.update({"teacher_l2": mean, "teacher_l2_err": score.err, "teacher_l2_loo": loo})
    return row


def _winners(args, rows: list[dict]) -> dict[int, tuple[dict, dict]]:
    """Per NFE whose edm and searched rows are all scored: (best searched/optimised row, best rho = 7 row),
    by FID on the search seeds."""
    out = {}
    for nfe in args.nfes:
        at = [r for r in rows if r["nfe"] == nfe]
        needed = len(args.solvers) * (1 + len(SEARCHED))
        if len([r for r in at if r["schedule"] in ("edm", *SEARCHED)]) < needed:
            continue
        base = min((r for r in at if r["schedule"] == "edm"), key=lambda r: r["fid"], default=None)
        other = min((r for r in at if r["schedule"] in SEARCHED), key=lambda r: r["fid"], default=None)
        if base is not None and other is not None:
            out[nfe] = (other, base)
    return out


def _holdout_makers(args, rows: list[dict], score_holdout) -> dict:
    return {f"holdout/{nfe}/{r['solver']}/{r['schedule']}":
            (lambda r=r, nfe=nfe: score_holdout(r["solver"], r["schedule"], nfe))
            for nfe, pair in _winners(args, rows).items() for r in pair}


def _headline(args, rows: list[dict], items: Items, score_holdout) -> list[dict]:
    from edmbench.metrics.paired import paired_difference

    winners = _winners(args, rows)
    held_all = items.gather(_holdout_makers(args, rows, score_holdout))
    out = []
    for nfe, (other, base) in winners.items():
        a, b = (held_all[f"holdout/{nfe}/{r['solver']}/{r['schedule']}"] for r in (other, base))
        d = paired_difference(a["fid"], a["fid_loo"], b["fid"], b["fid_loo"], a["num_images"])
        s = paired_difference(other["fid"], other["fid_loo"], base["fid"], base["fid_loo"],
                              other["num_images"])
        out.append({"nfe": nfe, "best_searched": f"{other['solver']}/{other['schedule']}",
                    "best_rho7": f"{base['solver']}/edm", "holdout_fid_searched": a["fid"],
                    "holdout_fid_rho7": b["fid"], "difference": d.debiased, "interval": list(d.interval),
                    "verdict": d.verdict(), "num_images": a["num_images"],
                    "search_seed_difference": s.debiased, "search_seed_interval": list(s.interval)})
        print(f"NFE {nfe}: held-out {out[-1]['best_searched']} {a['fid']:.3f} vs {out[-1]['best_rho7']} "
              f"{b['fid']:.3f}: {d.debiased:+.3f} [{d.interval[0]:+.3f}, {d.interval[1]:+.3f}] -> "
              f"{d.verdict()} "
              f"(n = {a['num_images']}; on the search seeds {s.debiased:+.3f})", flush=True)
    return out


def _proxy_quality(rows: list[dict]) -> dict:
    fid = np.array([r["fid"] for r in rows])
    prox = np.array([r["teacher_l2"] for r in rows])
    rho = _spearman(fid, prox)
    boot = _bootstrap(fid, prox)
    jack = _jackknife_groups(np.array([r["fid_loo"] for r in rows]),
                             np.array([r["teacher_l2_loo"] for r in rows]), rho)
    print(f"Spearman(teacher_l2, FID-digits) over {len(rows)} configurations at n = {rows[0]['num_images']}: "
          f"{rho:.3f}; bootstrap over configurations [{boot[0]:.3f}, {boot[1]:.3f}]; grouped jackknife over "
          f"seed groups [{jack['interval'][0]:.3f}, {jack['interval'][1]:.3f}] (95 %)", flush=True)
    return {"rho": rho, "bootstrap_configs": list(boot), "jackknife_seed_groups": jack,
            "num_configs": len(rows), "num_images": rows[0]["num_images"]}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-images", type=int, default=5000)
    p.add_argument("--holdout-images", type=int, default=5000)
    p.add_argument("--dp-samples", type=int, default=256)
    p.add_argument("--dp-grid", type=int, default=60)
    p.add_argument("--dp-substeps", type=int, default=4)
    p.add_argument("--teacher-steps", type=int, default=64)
    p.add_argument("--knots-solver", default="ipndm")
    p.add_argument("--knots-trials", type=int, default=40)
    p.add_argument("--knots-images", type=int, default=256)
    p.add_argument("--nfes", type=int, nargs="+", default=list(NFES))
    p.add_argument("--solvers", nargs="+", default=list(SOLVERS))
    p.add_argument("--schedules", nargs="+", default=list(SCHEDULES))
    p.add_argument("--out", default="benchmarks/low_nfe_digits_output.json")
    p.add_argument("--cache", default="benchmarks/_cache/low_nfe_digits.json")
    p.add_argument("--merge", nargs="*", default=[], help="other caches of this script to read first")
    p.add_argument("--finish", action="store_true", help="report from the stored pieces only (no new rows)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    torch.set_num_threads(1)
    import edmbench.digits.features  # noqa: F401 -- registers the digits-classifier extractor
    from edmbench import pretrained
    from edmbench.metrics.evaluate import resolve_extractor, resolve_reference
    from edmbench.resources import data_path

    start = time.time()
    name = "digits-edm-uncond"
    denoiser = pretrained.load(name)
    extractor, _ = resolve_extractor("digits-classifier", None, "cpu")
    reference = resolve_reference(data_path("pretrained/digits-train-stats.npz"))
    # the cache's keys name the NFE, solver and schedule, so only the other arguments must match; runs over
    # disjoint NFE sets may use separate caches (--cache) and be merged with --merge
    fixed = {k: v for k, v in vars(args).items() if k not in ("out", "cache", "merge", "nfes", "solvers",
                                                              "schedules", "finish")}
    cache = Cache(Path(args.cache), fixed, [Path(m) for m in args.merge])
    search = range(SEARCH_START, SEARCH_START + args.num_images)
    holdout = range(HOLDOUT_START, HOLDOUT_START + args.holdout_images)
    knots_teacher = _teacher(denoiser, range(args.knots_images), args.teacher_steps, name)
    built = _build_schedules(args, cache, denoiser, knots_teacher)
    teacher = _teacher(denoiser, search, args.teacher_steps, name)
    items = Items(Path(args.cache).with_suffix(".items"))
    combos = [(nfe, solver, schedule) for nfe in args.nfes for schedule in args.schedules
              for solver in args.solvers]

    def make(nfe: int, solver: str, schedule: str):
        def run() -> dict:
            config = _config(solver, schedule, nfe, built)
            row = _score(denoiser, extractor, reference, config, search, teacher)
            print(f"NFE {row['nfe']:2d} {solver:9s} {schedule:12s} FID {row['fid']:8.3f} "
                  f"± {row['fid_err']:.3f}  teacher_l2 {row['teacher_l2']:.4f}", flush=True)
            return row
        return run

    def score_holdout(solver: str, schedule: str, nfe: int) -> dict:
        return _score(denoiser, extractor, reference, _config(solver, schedule, nfe, built), holdout)

    def rows_of(found: dict) -> list[dict]:
        return [{"solver": so, "schedule": sc, **found[f"search/{n}/{so}/{sc}"]} for n, so, sc in combos
                if f"search/{n}/{so}/{sc}" in found]

    makers = {f"search/{n}/{so}/{sc}": make(n, so, sc) for n, so, sc in combos}
    # the headline's rows first (edm and searched schedules), then held-out scores where they are ready,
    # then the other schedules; --finish: only what is already stored (plus the held-out scores)
    head = {k: m for k, m in makers.items() if k.split("/")[3] in ("edm", *SEARCHED)}
    if not args.finish:
        for nfe in args.nfes:
            items.gather({k: m for k, m in head.items() if k.split("/")[1] == str(nfe)}, wait=False)
            items.gather(_holdout_makers(args, rows_of(items.stored(makers)), score_holdout), wait=False)
    found = items.stored(makers) if args.finish else items.gather(makers)
    rows = rows_of(found)

    headline = _headline(args, rows, items, score_holdout)
    proxy = _proxy_quality(rows)
    calls = {"teacher": (2 * args.teacher_steps - 1) * (args.num_images + args.knots_images),
             "schedules": sum(b["network_calls"] for b in built.values()),
             "search_configs": sum(r["nfe"] * r["num_images"] for r in rows),
             "holdout": sum(2 * h["num_images"] * h["nfe"] for h in headline)}
    print(f"network calls (per-image evaluations): {calls} = {sum(calls.values())}; "
          f"wall {time.time() - start:.0f} s (this process; cached pieces not recomputed)")
    out = {"args": vars(args), "rows": rows, "headline": headline, "schedules": built, "spearman": proxy,
           "network_calls": calls, "seeds": {"search": [search.start, search.stop],
                                             "holdout": [holdout.start, holdout.stop]}}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
