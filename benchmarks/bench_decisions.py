"""Decision quality against ground truth: quickstart-style searches, old design vs new, on cached features.

Ground truth: every grid setting's FID-digits on the ground-truth seeds (``--gt-start`` .. end of the
cache, >= 10k images), with its paired jackknife SE against the best setting. Searches: TPE (search seed r,
5 start-up trials) over the quickstart's space (``num_steps`` 4-24, ``rho`` 2-12, ``s_churn`` 0-20), each
suggestion snapped to the nearest cached grid setting (:func:`snapper`); the EDM default is enqueued
first. Every FID is computed from the cached features of that run's seeds (a random split, per run, of
the seeds below ``--gt-start`` into search and held-out seeds, so a search never sees a ground-truth
image), exactly as a study would compute it from freshly generated images. Images are counted the same
way for both designs: every image a trial generated (a trial pruned at a rung: that rung's count) plus
every held-out image.

- old design (the quickstart before the decisions issue): median pruner (4 start-up trials), winner = best
  search FID, "better than baseline" whenever the winner's search FID is below the baseline's (what the old
  summary printed), top 2 re-scored on ``--old-heldout`` held-out seeds without changing the winner;
- new design (``studies/quickstart.toml`` now: its trials, [[enqueue]] points and axis probes, held-out
  ranges): PairedPruner at the same rungs, paired evidence at every rung and the full count, winner = rank
  1 of the study's ``search_order`` ((trial - baseline) + ``--new-choose-z`` paired SE), the winner and the
  baseline confirmed on ``--new-ranges`` held-out ranges of ``--new-heldout`` seeds (top_k = 1), "better"
  only when the paired held-out interval (edmbench.study.confirm, the study's own code) excludes 0.

Per design: images spent, regret (ground-truth FID of the winner minus the best's), how often the winner
is within one ground-truth paired SE of the best, and false "better" verdicts (ground-truth difference
winner - baseline >= 0).

    nice -n 10 python benchmarks/decisions_features.py --grid full --num-images 12500 \\
        --cache benchmarks/_cache/decisions-full
    nice -n 10 python benchmarks/bench_decisions.py --runs 10   # the shipped design's settings by default
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_paired import fid_loo, reference
from decisions_features import GRIDS, load_features, setting_name

BASELINE = (18, 7.0, 0.0)  # the EDM default, enqueued first
SPACE = {"num_steps": (4, 24), "rho": (2.0, 12.0), "s_churn": (0.0, 20.0)}  # studies/quickstart.toml


def snapper(grid: list):
    """Map a suggestion (num_steps, rho, s_churn) to a cached setting: each knob to its nearest cached
    level; when that combination is not cached (a feature cache stopped short), the nearest cached setting
    in knob units scaled by the space's ranges."""
    levels = [sorted({s[i] for s in grid}) for i in range(3)]
    spans = [hi - lo for lo, hi in SPACE.values()]
    have = set(grid)

    def snap(point: tuple) -> tuple:
        each = tuple(min(lv, key=lambda v, x=x: (abs(v - x), v)) for lv, x in zip(levels, point, strict=True))
        if each in have:
            return each
        return min(grid, key=lambda s: sum(abs(a - b) / w for a, b, w in zip(s, point, spans, strict=True)))

    return snap


def ground_truth_scores(features: dict, grid: list, ref, gt_seeds: np.ndarray) -> dict:
    """{setting: (plug-in FID, leave-one-group-out FIDs)} on the ground-truth seeds (computed once)."""
    return {s: fid_loo(features[s][gt_seeds], gt_seeds, ref) for s in grid}


def ground_truth(scored: dict, n: int) -> dict:
    """{setting: (plug-in FID, paired SE against the best, plug-in difference to the best, paired SE
    against the best deterministic setting, difference to it)} from :func:`ground_truth_scores` on n
    seeds. Ranked by the plug-in FID: its O(1/n) bias is shared by settings on the same seeds."""
    from edmbench.metrics.paired import paired_difference

    best = min(scored, key=lambda s: scored[s][0])
    det = min((s for s in scored if s[2] == 0), key=lambda s: scored[s][0])
    out = {}
    for s, (v, loo) in scored.items():
        d = paired_difference(v, loo, *scored[best], n)
        e = paired_difference(v, loo, *scored[det], n)
        out[s] = (v, d.se, d.estimate, e.se, e.estimate)
    return out


def best_fid_se(scored: dict, n: int) -> float:
    """The other reading of "one ground-truth SE": the (unpaired) jackknife SE of the best setting's own
    ground-truth FID (against a stochastic best it is of the same size as the paired SE of a difference)."""
    from edmbench.metrics.paired import single_estimate

    best = min(scored, key=lambda s: scored[s][0])
    return single_estimate(*scored[best], n).se


class Scorer:
    """FID and leave-one-group-out FIDs of a setting on seeds, memoised (a search re-suggests settings)."""

    def __init__(self, features: dict, ref) -> None:
        self.features, self.ref, self.memo = features, ref, {}

    def __call__(self, setting: tuple, seeds: np.ndarray) -> tuple[float, np.ndarray]:
        key = (setting, seeds.tobytes())
        if key not in self.memo:
            self.memo[key] = fid_loo(self.features[setting][seeds], seeds, self.ref)
        return self.memo[key]


def enqueued(design: str, args) -> list:
    """The points enqueued before the search: the EDM default (old design); the spec's [[enqueue]] entries,
    with the axis probes of ``--probes`` (default: as the spec says), for the new design."""
    from edmbench.study._sections import EnqueueSpec

    default = EnqueueSpec("EDM default", dict(zip(SPACE, BASELINE, strict=True)))
    if design == "old":
        return [default]
    return list(quickstart_spec(args).enqueue)


def search(design: str, run: int, score: Scorer, snap, seeds: np.ndarray, args) -> tuple:
    """One quickstart-style search; returns (study, {trial number: setting}, images spent)."""
    import optuna

    from edmbench.study.pruners import PairedPruner, write_rung_evidence
    from edmbench.study.record import enqueue_attrs

    pruner = (PairedPruner(level=args.new_level) if design == "new"
              else optuna.pruners.MedianPruner(n_startup_trials=4))
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=run, n_startup_trials=5),
                                pruner=pruner)
    for entry in enqueued(design, args):
        study.enqueue_trial(entry.params, user_attrs=enqueue_attrs(label=entry.label))
    settings, spent = {}, [0]
    rungs = [r for r in args.rungs if r < args.search_images]

    def objective(trial: optuna.Trial) -> float:
        n = trial.suggest_int("num_steps", *SPACE["num_steps"])
        rho, churn = (trial.suggest_float(k, *SPACE[k]) for k in ("rho", "s_churn"))
        setting = snap((n, rho, churn))
        settings[trial.number] = setting
        for rung in rungs:
            value, loo = score(setting, seeds[:rung])
            write_rung_evidence(trial, rung, value, list(loo))
            trial.report(value, rung)
            if trial.should_prune():
                spent[0] += rung
                raise optuna.TrialPruned()
        spent[0] += args.search_images
        value, loo = score(setting, seeds)
        trial.set_user_attr("result", {"fid": value, "num_images": args.search_images})  # as the study
        if args.final_evidence:  # the study's rung evidence at the full count (requested of objective.py)
            write_rung_evidence(trial, args.search_images, value, list(loo))
        return value

    study.optimize(objective, n_trials=args.new_trials if design == "new" else args.old_trials)
    return study, settings, spent[0]


def quickstart_spec(args):
    """studies/quickstart.toml with the benchmark's image count and rungs (the choice reads both)."""
    import dataclasses
    import tomllib

    from edmbench.resources import data_path
    from edmbench.study._sections import axis_probes, read_enqueue
    from edmbench.study.spec import load_spec

    spec = load_spec(data_path("studies/quickstart.toml"), check_files=False)
    metric = dataclasses.replace(spec.metric, num_images=args.search_images, rungs=tuple(args.rungs))
    # --probes overrides the spec's: its own [[enqueue]] entries, then the probes asked for
    given = read_enqueue(tomllib.loads(spec.source_text).get("enqueue", []), spec.space, [])
    probes = axis_probes(given, spec.space, []) if (args.probes or spec.search.probes) == "axes" else []
    return dataclasses.replace(spec, metric=metric, enqueue=tuple(given + probes))


def choose(study, spec, z: float) -> int:
    """The winner as the study chooses it: rank 1 of edmbench.study.confirm.search_order ((trial -
    baseline) + z paired SE on the search seeds; z = 0: the best search FID)."""
    from edmbench.study.confirm import search_order

    return search_order(study, spec, z)[0]


def new_confirmation(score: Scorer, settings: dict, winner: int, ranges: list) -> tuple[str, int]:
    """The study's held-out confirmation of the winner (top_k = 1) and the baseline (trial 0): records as
    edmbench.study.confirm stores them, the verdict from its paired, range-combined interval."""
    from edmbench.study.confirm import heldout_difference

    base = 0
    confirmed = sorted({winner, base})
    records = []
    for number in confirmed:
        for start, seeds in enumerate(ranges):
            value, loo = score(settings[number], seeds)
            records.append({"number": number, "seed_start": start, "fid": value, "loo": list(loo),
                            "num_images": len(seeds)})
    spent = len(confirmed) * sum(len(r) for r in ranges)
    if winner == base:
        return "-", spent
    return heldout_difference(records, winner, base, "fid").verdict("minimize"), spent


def one_run(design: str, run: int, score: Scorer, snap, truth: dict, args) -> dict:
    pool = np.random.default_rng(run).permutation(args.gt_start)
    seeds = np.sort(pool[:args.search_images])
    study, settings, spent = search(design, run, score, snap, seeds, args)
    chosen = (study.best_trial.number if design == "old"
              else choose(study, quickstart_spec(args), args.new_choose_z))
    winner = settings[chosen]
    if design == "old":
        top = sorted((t for t in study.trials if t.value is not None), key=lambda t: t.value)[:2]
        spent += len(top) * args.old_heldout  # the old final re-scoring (top 2), winner unchanged
        base = study.trials[0].value
        verdict = ("better" if study.best_trial.number != 0 and base is not None
                   and study.best_value < base else "-")
    else:
        held = pool[args.search_images:]
        ranges = [np.sort(held[i * args.new_heldout:(i + 1) * args.new_heldout])
                  for i in range(args.new_ranges)]
        verdict, heldout = new_confirmation(score, settings, chosen, ranges)
        spent += heldout
    value, se, regret, se_det, regret_det = truth[winner]
    gt_vs_baseline = truth[winner][0] - truth[BASELINE][0]
    pruned = sum(t.state.name == "PRUNED" for t in study.trials)
    return {"design": design, "run": run, "winner": setting_name(*winner), "images": spent,
            "pruned": pruned, "trials": len(study.trials), "regret": regret, "within_1se": regret <= se,
            "within_1se_unpaired": regret <= args.best_se,
            "within_1se_det": regret_det <= se_det,
            "verdict": verdict, "false_better": verdict == "better" and gt_vs_baseline >= 0}


def print_truth(truth: dict, grid: list, args, total: int) -> None:
    print(f"Ground truth: {len(grid)} settings (Heun num_steps x rho x s_churn), seeds {args.gt_start}-"
          f"{total - 1} ({total - args.gt_start:,} images each), plug-in FID-digits; paired jackknife SE "
          "of the difference to the best")
    print("| setting | NFE | FID | minus best | paired SE | minus best deterministic | paired SE |\n"
          "|---|---|---|---|---|---|---|")
    for s in sorted(grid, key=lambda s: truth[s][0]):
        mark = " (EDM default)" if s == BASELINE else ""
        v, se, d, se_det, d_det = truth[s]
        print(f"| {setting_name(*s)}{mark} | {2 * s[0] - 1} | {v:.3f} | {d:+.3f} | {se:.3f} | {d_det:+.3f} | "
              f"{se_det:.3f} |")


def print_runs(rows: list, args) -> None:
    print(f"\nSearches: {args.runs} runs per design, {args.search_images} images per trial, rungs "
          f"{args.rungs}. old: {args.old_trials} trials, median pruner, top 2 re-scored on "
          f"{args.old_heldout} held-out seeds. new: {args.new_trials} trials, PairedPruner (level "
          f"{args.new_level}), winner by (trial - baseline) + {args.new_choose_z:g} paired SE (evidence at "
          f"{'the full count' if args.final_evidence else 'the deepest rung'}), winner and "
          f"baseline confirmed on {args.new_ranges} x {args.new_heldout} held-out seeds.\n")
    print("| design | run | winner | trials (pruned) | images | regret | within 1 GT SE | within 1 GT SE "
          "of the best deterministic | verdict vs baseline | false better |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['design']} | {r['run']} | {r['winner']} | {r['trials']} ({r['pruned']}) | "
              f"{r['images']:,} | {r['regret']:+.3f} | {r['within_1se']} | {r['within_1se_det']} | "
              f"{r['verdict']} | "
              f"{r['false_better']} |")
    print("\n| design | mean images | mean regret | max regret | within 1 GT SE (paired) | "
          f"within 1 GT SE of the best's own FID ({args.best_se:.3f}) | within 1 GT SE of the best "
          "deterministic | false 'better' | 'better' verdicts |\n|---|---|---|---|---|---|---|---|---|")
    for design in ("old", "new"):
        sel = [r for r in rows if r["design"] == design]
        print(f"| {design} | {np.mean([r['images'] for r in sel]):,.0f} | "
              f"{np.mean([r['regret'] for r in sel]):.3f} | {max(r['regret'] for r in sel):.3f} | "
              f"{sum(r['within_1se'] for r in sel)}/{len(sel)} | "
              f"{sum(r['within_1se_unpaired'] for r in sel)}/{len(sel)} | "
              f"{sum(r['within_1se_det'] for r in sel)}/{len(sel)} | {sum(r['false_better'] for r in sel)} | "
              f"{sum(r['verdict'] == 'better' for r in sel)} |")


def main(argv: list[str] | None = None) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/_cache/decisions-full"))
    parser.add_argument("--gt-start", type=int, default=2500, help="seeds >= this are ground truth only")
    parser.add_argument("--search-images", type=int, default=500)
    parser.add_argument("--rungs", type=int, nargs="+", default=[100, 250])
    parser.add_argument("--old-trials", type=int, default=16)
    parser.add_argument("--old-heldout", type=int, default=1000)
    parser.add_argument("--new-trials", type=int, default=None, help="default: the spec's n_trials")
    parser.add_argument("--new-heldout", type=int, default=None,
                        help="held-out seeds per range (default: the spec's [rescore] num_images)")
    parser.add_argument("--new-ranges", type=int, default=None,
                        help="held-out ranges (default: the spec's [rescore] seed_starts)")
    parser.add_argument("--new-level", type=float, default=0.95, help="the PairedPruner's level")
    parser.add_argument("--new-choose-z", type=float, default=1.0,
                        help="winner: min of (trial - baseline) + z x paired SE (0: best search FID)")
    parser.add_argument("--final-evidence", type=int, default=1, choices=(0, 1),
                        help="1: trials store paired evidence at the full count (else the deepest rung)")
    parser.add_argument("--probes", choices=("none", "axes"), default=None,
                        help="the new design's axis probes (default: as studies/quickstart.toml says)")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    import sys

    from edmbench.resources import data_path
    from edmbench.study.spec import load_spec

    shipped = load_spec(data_path("studies/quickstart.toml"), check_files=False)
    args.new_trials = args.new_trials or shipped.budget.n_trials
    args.new_heldout = args.new_heldout or shipped.rescore.num_images
    args.new_ranges = args.new_ranges or len(shipped.rescore.seed_starts)

    given = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"Command: python benchmarks/bench_decisions.py {given}\n")
    if args.search_images + args.new_ranges * args.new_heldout > args.gt_start:
        parser.error("--search-images + --new-ranges x --new-heldout must fit below --gt-start")
    grid = [s for s in GRIDS[args.grid] if (args.cache / f"{setting_name(*s)}.npz").is_file()]
    if BASELINE not in grid:
        parser.error(f"the baseline {setting_name(*BASELINE)} is not in the cache {args.cache}")
    features = {s: load_features(args.cache, s) for s in grid}
    total = min(len(f) for f in features.values())
    ref = reference()
    scored = ground_truth_scores(features, grid, ref, np.arange(args.gt_start, total))
    truth = ground_truth(scored, total - args.gt_start)
    args.best_se = best_fid_se(scored, total - args.gt_start)
    print_truth(truth, grid, args, total)
    score = Scorer(features, ref)
    rows = [one_run(design, run, score, snapper(grid), truth, args)
            for design in ("old", "new") for run in range(args.runs)]
    print_runs(rows, args)


if __name__ == "__main__":
    main()
