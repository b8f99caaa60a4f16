"""Feature cache for the decision benchmarks: digits-classifier features of one grid of Heun settings.

For every setting of the grid, generate the images of seeds ``0 .. num_images-1`` with the model and keep
their extractor features (float32 ``[num_images, 64]``), one ``.npz`` per setting in ``--cache``. Both
``bench_paired.py`` (paired vs unpaired widths) and ``bench_decisions.py`` (ground truth and simulated
searches) read the cache, so the expensive part (sampling) runs once and is resumable: a setting already in
the cache is skipped.

    nice -n 10 python benchmarks/decisions_features.py --grid full --num-images 10000     # the full benchmark
    nice -n 10 python benchmarks/decisions_features.py --grid reduced --num-images 1200   # what fits 2 CPUs
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

# Heun settings (num_steps, rho, s_churn). "reduced" holds the three pairs of the paired-width measurement
# (18 vs 15 steps, rho 7 vs 10, churn 0 vs 10) plus low-step settings that are clearly worse.
GRIDS = {
    "reduced": [(18, 7.0, 0.0), (15, 7.0, 0.0), (18, 10.0, 0.0), (18, 7.0, 10.0), (8, 7.0, 0.0),
                (12, 7.0, 0.0), (12, 3.0, 0.0), (8, 10.0, 0.0)],
    "full": list(itertools.product((6, 8, 10, 12, 15, 18, 22), (3.0, 5.0, 7.0, 10.0), (0.0, 5.0, 10.0))),
}


def setting_name(num_steps: int, rho: float, s_churn: float) -> str:
    return f"heun-{num_steps}-rho{rho:g}-churn{s_churn:g}"


def cache_path(cache: Path, setting: tuple) -> Path:
    return cache / f"{setting_name(*setting)}.npz"


def load_features(cache: Path, setting: tuple) -> np.ndarray:
    with np.load(cache_path(cache, setting)) as data:
        return data["features"].astype(np.float64)


def compute(setting: tuple, num_images: int, model: str, batch_size: int) -> tuple[np.ndarray, float]:
    """Features of seeds 0..num_images-1 under one Heun setting, and the images per second."""
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
        for batch in generate_images(denoiser, config, range(num_images), batch_size=batch_size,
                                     class_policy=None, device="cpu"):
            rows.append(extract_features(extractor, batch.images).double().numpy())
    return np.concatenate(rows).astype(np.float32), num_images / (time.perf_counter() - start)


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
        if path.is_file() and len(np.load(path)["features"]) >= args.num_images:
            continue
        features, rate = compute(setting, args.num_images, args.model, args.batch_size)
        np.savez(path, features=features, model=args.model, seeds=f"0-{args.num_images - 1}")
        print(f"{setting_name(*setting)}: {args.num_images} images, {rate:.1f} images/s", flush=True)


if __name__ == "__main__":
    main()
