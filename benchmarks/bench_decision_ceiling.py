"""The ceiling of decision quality at a given image count: every grid setting scored, no search at all.

``bench_decisions.py`` asks a quickstart-style search (about 7k images in all) to choose, in 9 of 10 runs, a
setting within one ground-truth SE of the best. This benchmark asks how often that is possible *at all*
when every one of the 30 grid settings is scored on the same n search seeds (30 n images, more than any
search spends), chosen by three rules, against the same ground truth:

- best plug-in FID on the search seeds;
- best jackknife bias-corrected FID;
- the study's rule: lowest (setting - EDM default) + 1 paired SE, the default when nothing is lower than 0.

A search that sees fewer settings, with fewer images, and adapts on noisy values cannot expect to do better
than the best of these rules at 2x its budget. Seeds are drawn per run as ``bench_decisions.py`` draws its
search seeds (run r: ``permutation(gt_start)`` with seed r, the first n), so n = 500 are the searches' seeds.

Ground truth: computed from the cache when it holds ``--gt-start`` + 10k seeds per setting (as
``bench_decisions.py`` does); otherwise read from the full-size table of ``--truth`` (the committed
``bench_decisions_output.md``, made by that code from such a cache). Then only the search pool (seeds
0 .. gt_start - 1) needs features:

    nice -n 10 python benchmarks/decisions_features.py --grid full --num-images 2500 \\
        --cache benchmarks/_cache/decisions-full
    python benchmarks/bench_decision_ceiling.py [--num-images 250 500 1000 2500] [--runs 10]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
from bench_decisions import BASELINE, ground_truth, ground_truth_scores
from bench_paired import fid_loo, reference
from decisions_features import GRIDS, load_features, setting_name

RULES = ("best plug-in FID", "best bias-corrected FID", "(d - default) + 1 paired SE")
_ROW = re.compile(r"^\| (heun-(\d+)-rho([\d.]+)-churn([\d.]+))(?: \(EDM default\))? \| \d+ \| ([\d.]+) \| "
                  r"([+-][\d.]+) \| ([\d.]+) \|")


def truth_from_table(path: Path) -> dict:
    """{setting: (FID, paired SE to the best, difference to the best)} from the first ground-truth table of
    ``path`` (bench_decisions.py's output)."""
    out = {}
    for line in path.read_text().splitlines():
        if out and not line.startswith("|"):
            break
        match = _ROW.match(line)
        if match:
            _, steps, rho, churn, fid, diff, se = match.groups()
            out[(int(steps), float(rho), float(churn))] = (float(fid), float(se), float(diff))
    if not out:
        raise SystemExit(f"no ground-truth table in {path}")
    return out


def choose(scores: dict, n: int) -> dict:
    """The setting each rule picks from {setting: (FID, leave-one-out FIDs)} on n shared seeds. The third
    is ``edmbench.study.confirm.search_order``'s key with the evidence at the full count: the plug-in
    difference to the default plus ``CHOICE_Z`` paired SE."""
    from edmbench.metrics.paired import paired_difference, single_estimate
    from edmbench.study.confirm import CHOICE_Z

    debiased = {s: single_estimate(v, loo, n).debiased for s, (v, loo) in scores.items()}
    base = scores[BASELINE]

    def penalised(s: tuple) -> float:
        if s == BASELINE:
            return 0.0
        d = paired_difference(*scores[s], *base, n)
        return d.estimate + CHOICE_Z * d.se

    return {RULES[0]: min(scores, key=lambda s: scores[s][0]), RULES[1]: min(debiased, key=debiased.get),
            RULES[2]: min(scores, key=penalised)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/_cache/decisions-full"))
    parser.add_argument("--truth", type=Path, default=Path(__file__).with_name("bench_decisions_output.md"))
    parser.add_argument("--gt-start", type=int, default=2500)
    parser.add_argument("--num-images", type=int, nargs="+", default=[250, 500, 1000, 2500])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    grid = [s for s in GRIDS["full"] if (args.cache / f"{setting_name(*s)}.npz").is_file()]
    if len(grid) != len(GRIDS["full"]):
        parser.error(f"the cache {args.cache} holds {len(grid)} of the {len(GRIDS['full'])} grid settings")
    features = {s: load_features(args.cache, s) for s in grid}
    total = min(len(f) for f in features.values())
    if any(n > args.gt_start for n in args.num_images) or total < args.gt_start:
        parser.error(f"need --num-images <= --gt-start = {args.gt_start} and that many cached seeds "
                     f"({total})")
    ref = reference()
    if total >= args.gt_start + 10_000:
        truth = ground_truth(ground_truth_scores(features, grid, ref, np.arange(args.gt_start, total)),
                             total - args.gt_start)
        source = f"computed on seeds {args.gt_start}-{total - 1}"
    else:
        truth = truth_from_table(args.truth)
        source = f"read from {args.truth.name} (seeds 2500-12499, 10,000 images per setting)"
    within = {s: truth[s][2] <= truth[s][1] for s in grid}  # regret <= its paired SE to the best
    print(f"Ground truth {source}; within 1 GT SE of the best: "
          f"{', '.join(setting_name(*s) for s in grid if within[s])}\n")
    print("| images per setting | all 30 settings | runs | rule | within 1 GT SE | mean regret | choices |\n"
          "|---|---|---|---|---|---|---|")
    for n in args.num_images:
        runs = 1 if n == args.gt_start else args.runs  # n = the whole pool: every run has the same seeds
        picks = {rule: [] for rule in RULES}
        for run in range(runs):
            seeds = np.sort(np.random.default_rng(run).permutation(args.gt_start)[:n])
            scores = {s: fid_loo(features[s][seeds], seeds, ref) for s in grid}
            for rule, setting in choose(scores, n).items():
                picks[rule].append(setting)
        for rule, chosen in picks.items():
            names = sorted({setting_name(*s) for s in chosen})
            print(f"| {n:,} | {30 * n:,} | {runs} | {rule} | {sum(within[s] for s in chosen)}/{runs} | "
                  f"{np.mean([truth[s][2] for s in chosen]):.3f} | {', '.join(names)} |")


if __name__ == "__main__":
    main()
