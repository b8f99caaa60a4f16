"""Feature cache for the decision benchmarks: digits-classifier features of one grid of Heun settings.

For every setting of the grid, generate the images of seeds ``0 .. num_images-1`` with the model and keep
their extractor features (float32 ``[num_images, 64]``), one ``.npz`` per setting in ``--cache``. Both
``bench_paired.py`` (paired vs unpaired widths) and ``bench_decisions.py`` (ground truth and simulated
searches) read the cache, so the expensive part (sampling) runs once and is resumable: a setting already in
the cache is skipped, and one with fewer images is extended by the missing seeds.

    nice -n 10 python benchmarks/decisions_features.py --grid full --num-images 12500 \\
        --cache benchmarks/_cache/decisions-full                                          # the full benchmark
    nice -n 10 python benchmarks/decisions_features.py --grid reduced --num-images 1200   # what fits 2 CPUs
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

# Heun settings (num_steps, rho, s_churn). "reduced" holds the three pairs of the paired-width measurement
# (18 vs 15 steps, rho 7 vs 10, churn 0 vs 10) plus low-step settings that are clearly worse. "full" is the
# quickstart's search space (num_steps 4-24, rho 2-12, s_churn 0-20) discretised to 5 x 3 x 2 = 30 settings,
# the EDM default (18, 7, 0) among them; the cost of one setting is proportional to its NFE = 2 N - 1.
GRIDS = {
    "reduced": [(18, 7.0, 0.0), (15, 7.0, 0.0), (18, 10.0, 0.0), (18, 7.0, 10.0), (8, 7.0, 0.0),
                (12, 7.0, 0.0), (12, 3.0, 0.0), (8, 10.0, 0.0)],
    # "full": ordered so that a run stopped short (a loaded machine) still holds a complete deterministic
    # grid: every s_churn = 0 setting first (the EDM default's step count first), churn next, 24 steps last
    "full": sorted(itertools.product((18, 12, 8, 4, 24), (7.0, 12.0, 3.0), (0.0, 10.0)),
                   key=lambda s: (s[0] == 24, s[2], (18, 12, 8, 4, 24).index(s[0]),
                                  (7.0, 12.0, 3.0).index(s[1]))),
}


def setting_name(num_steps: int, rho: float, s_churn: float) -> str:
    return f"heun-{num_steps}-rho{rho:g}-churn{s_churn:g}"


def cache_path(cache: Path, setting: tuple) -> Path:
    return cache / f"{setting_name(*setting)}.npz"


def load_features(cache: Path, setting: tuple) -> np.ndarray:
    with np.load(cache_path(cache, setting)) as data:
        return data["features"].astype(np.float64)


def compute(setting: tuple, seeds: range, model: str, batch_size: int) -> tuple[np.ndarray, float]:
    """Features of ``seeds`` under one Heun setting, and the images per second."""
    import torch

    from edmbench.generate import generate_images
    from edmbench.metrics.features import extract_features, get_extractor
    from edmbench.pretrained import load
    from edmbench.sampling import SamplerConfig

    denoiser = load(model)
    extractor = get_extractor("digits-classifier", None, device="cpu")
    num_steps, rho, s_churn = setting
    config = SamplerConfig.from_dict({"sampler": "heun", "num_steps": num_steps, "rho": rho,
                                      "s_churn": s_churn})
    rows, start = [], time.perf_counter()
    with torch.no_grad():
        for batch in generate_images(denoiser, config, seeds, batch_size=batch_size,
                                     class_policy=None, device="cpu"):
            rows.append(extract_features(extractor, batch.images).double().numpy())
    return np.concatenate(rows).astype(np.float32), len(seeds) / (time.perf_counter() - start)


def cached(path: Path) -> np.ndarray:
    """The features already cached for a setting (seeds 0..len-1), or an empty array."""
    if not path.is_file():
        return np.zeros((0, 0), np.float32)
    with np.load(path) as data:
        return data["features"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), default="reduced")
    parser.add_argument("--num-images", type=int, default=1200)
    parser.add_argument("--model", default="digits-edm-uncond")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/_cache/decisions"))
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reverse", action="store_true", help="walk the grid backwards (a second process)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    for setting in GRIDS[args.grid][::-1] if args.reverse else GRIDS[args.grid]:
        path = cache_path(args.cache, setting)
        have = cached(path)
        if len(have) >= args.num_images:
            continue
        # image i depends only on seed i, so a cache is extended by the missing seeds, never recomputed
        features, rate = compute(setting, range(len(have), args.num_images), args.model, args.batch_size)
        if len(have):
            features = np.concatenate([have, features])
        np.savez(path, features=features, model=args.model, seeds=f"0-{args.num_images - 1}")
        print(f"{setting_name(*setting)}: seeds {len(have)}-{args.num_images - 1}, {rate:.1f} images/s",
              flush=True)

if __name__ == "__main__":
    main()
