"""Paired vs unpaired interval widths on digits-edm-uncond (FID-digits, seeds 0..n-1 shared by every
setting, 10 seed groups): for each pair, the difference, its paired jackknife SE, the unpaired
sqrt(se_a^2 + se_b^2) and their ratio, measured side by side from one feature cache.

    nice -n 10 python benchmarks/decisions_features.py --grid reduced --num-images 1200
    nice -n 10 python benchmarks/bench_paired.py --cache benchmarks/_cache/decisions
    python benchmarks/bench_paired.py --pairs full --cache benchmarks/_cache/decisions-full   # 12,500 images
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from decisions_features import cache_path, load_features, setting_name

PAIRS = {"reduced": [((18, 7.0, 0.0), (15, 7.0, 0.0)), ((18, 7.0, 0.0), (18, 10.0, 0.0)),
                     ((18, 7.0, 0.0), (18, 7.0, 10.0)), ((18, 7.0, 0.0), (8, 7.0, 0.0))],
         "full": [((18, 7.0, 0.0), (12, 7.0, 0.0)), ((18, 7.0, 0.0), (18, 12.0, 0.0)),   # the full grid's
                  ((18, 7.0, 0.0), (18, 7.0, 10.0)), ((18, 7.0, 0.0), (8, 7.0, 0.0))]}  # nearest pairs


def reference():
    from edmbench.metrics.stats import load_reference
    from edmbench.resources import data_path

    return load_reference(data_path("pretrained/digits-train-stats.npz"))


def fid_loo(features: np.ndarray, seeds: np.ndarray, ref, groups: int = 10) -> tuple[float, np.ndarray]:
    """FID of the rows and their leave-one-seed-group-out FIDs (edmbench.metrics.fid.FIDStream)."""
    from edmbench.metrics.fid import FIDStream

    stream = FIDStream(ref, groups=groups)
    stream.update(features, seeds=[int(s) for s in seeds])
    jack = stream.jackknife()
    return float(jack.full), np.asarray(jack.loo)


def main(argv: list[str] | None = None) -> None:
    from edmbench.metrics.paired import paired_difference, unpaired_difference

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/_cache/decisions"))
    parser.add_argument("--num-images", type=int, default=None, help="default: all cached images")
    parser.add_argument("--pairs", choices=sorted(PAIRS), default="reduced")
    args = parser.parse_args(argv)
    ref = reference()
    print("| A | B | n | FID A | B - A | paired SE | unpaired SE | unpaired / paired |")
    print("|---|---|---|---|---|---|---|---|")
    for a, b in PAIRS[args.pairs]:
        if not (cache_path(args.cache, a).is_file() and cache_path(args.cache, b).is_file()):
            print(f"| {setting_name(*a)} | {setting_name(*b)} | (not cached) |")
            continue
        fa, fb = load_features(args.cache, a), load_features(args.cache, b)
        n = min(len(fa), len(fb), args.num_images or len(fa))
        seeds = np.arange(n)
        (va, la), (vb, lb) = fid_loo(fa[:n], seeds, ref), fid_loo(fb[:n], seeds, ref)
        d = paired_difference(vb, lb, va, la, n)
        u = unpaired_difference(vb, lb, va, la, n)
        print(f"| {setting_name(*a)} | {setting_name(*b)} | {n} | {va:.3f} | {d.debiased:+.3f} | "
              f"{d.se:.3f} | {u.se:.3f} | {u.se / d.se:.1f}x |")


if __name__ == "__main__":
    main()
