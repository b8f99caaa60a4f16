"""Evaluate the embedded default with FID-digits: floor, sampler comparison, conditional accuracy, grid.

Protocol (apples to apples). The train split is cut into two disjoint class-stratified halves A and B
(``split_indices(..., seed=HALVES_SEED, held_out_fraction=0.5)``). Every FID uses the statistics of B as
the reference and n = |A| images: the floor is FID(A, B); a model's FID is FID(n generated images, B).
Error bars are the metrics module's grouped jackknife (``FIDStream``, 10 groups; the reference is treated
as exact in both cases). Generated images use seeds 0..n-1 (common random numbers across samplers).

    python -m edmbench.digits.evaluate                   # prints the report, writes docs/img/*
    python -m edmbench.digits.evaluate --write-reference # (re)writes pretrained/digits-train-stats.npz
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from edmbench.digits.data import SPLIT_SEED, load_split, split_indices
from edmbench.digits.features import EXTRACTOR_NAME, reference_stats
from edmbench.generate import generate_images, quantize
from edmbench.metrics.features import extract_features, get_extractor
from edmbench.metrics.fid import FIDStream, RungResult
from edmbench.metrics.stats import ReferenceStats, save_reference
from edmbench.pretrained import PRETRAINED_DIR
from edmbench.sampling import SamplerConfig

HALVES_SEED = 0
DOCS_IMG = PRETRAINED_DIR.parent / "docs" / "img"
# (sampler, num_steps) of the sampler-comparison sweep; NFE comes from the registry (Euler N, Heun 2N - 1)
SWEEP = (("euler", 5), ("euler", 10), ("euler", 20), ("euler", 40),
         ("heun", 3), ("heun", 5), ("heun", 10), ("heun", 18))


def real_halves(seed: int = HALVES_SEED) -> tuple[Tensor, Tensor]:
    """Two disjoint class-stratified halves (uint8 ``[n, 1, 8, 8]``) of the train split."""
    train = load_split("train")
    a, b = split_indices(len(train), train.labels.numpy(), seed=seed, held_out_fraction=0.5)
    images = quantize(train.images)
    return images[a], images[b]


def fid_with_error(features: Tensor, reference: ReferenceStats, groups: int = 10) -> RungResult:
    """FID of feature rows against ``reference`` with the jackknife error bar."""
    stream = FIDStream(reference, groups=groups)
    stream.update(features)
    return stream.result()


def generated(denoiser, config: SamplerConfig, seeds: Sequence[int], class_policy="random",
              batch_size: int = 256) -> tuple[Tensor, Tensor | None]:
    """uint8 images and their class indices (or None) for ``seeds``."""
    images, labels = [], []
    for batch in generate_images(denoiser, config, seeds, batch_size=batch_size, class_policy=class_policy):
        images.append(batch.images)
        if batch.class_labels is not None:
            labels.append(batch.class_labels.argmax(1))
    return torch.cat(images), (torch.cat(labels) if labels else None)


def model_fid(denoiser, config: SamplerConfig, n: int, reference: ReferenceStats, extractor) -> RungResult:
    """FID-digits of ``n`` images from seeds 0..n-1 against ``reference`` (the one scoring pipeline,
    :func:`edmbench.metrics.evaluate.score_rungs`; 10-group jackknife)."""
    from edmbench.metrics.evaluate import score_rungs

    return list(score_rungs(denoiser, config, range(n), extractor, reference, batch_size=256))[-1]


def conditional_accuracy(denoiser, config: SamplerConfig, seeds: Sequence[int], classifier) -> float:
    """Fraction of class-conditional samples that the digits classifier assigns to the requested class."""
    from edmbench.digits.features import to_grey

    images, labels = generated(denoiser, config, seeds)
    if labels is None:
        raise ValueError("conditional_accuracy needs a class-conditional denoiser (label_dim > 0)")
    with torch.no_grad():
        predicted = classifier(to_grey(images)).argmax(1)
    return float((predicted == labels).to(torch.float64).mean())


def train_reference(extractor) -> ReferenceStats:
    """FID-digits statistics (and feature rows) of the whole train split: ``digits-train-stats.npz``."""
    info = {"dataset": "sklearn.datasets.load_digits", "split": "train", "split_seed": SPLIT_SEED,
            "extractor": EXTRACTOR_NAME, "layer": "64", "quantisation": "edmbench.generate.quantize"}
    return reference_stats(quantize(load_split("train").images), extractor, provenance=info)


def sampler_sweep(denoiser, n: int, reference: ReferenceStats, extractor,
                  sweep: Sequence[tuple[str, int]] = SWEEP) -> list[dict]:
    """One row per (sampler, num_steps): nfe, num_images, fid, fid_err."""
    rows = []
    for sampler, num_steps in sweep:
        config = SamplerConfig(sampler=sampler, num_steps=num_steps)
        result = model_fid(denoiser, config, n, reference, extractor)
        rows.append({"sampler": sampler, "num_steps": num_steps, "nfe": config.nfe,
                     "num_images": result.num_images,
                     "fid": result.fid, "fid_err": result.fid_err})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown_table(rows: Sequence[dict], floor: RungResult) -> str:
    """Sampler comparison as a Markdown table (FID-digits +- jackknife standard error)."""
    lines = ["| model | sampler | num_steps | nfe | n | FID-digits |",
             "| --- | --- | --- | --- | --- | --- |",
             f"| real half A vs B (floor) | - | - | - | {floor.num_images} | {floor.fid:.3f} ± "
             f"{floor.fid_err:.3f} |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['sampler']} | {r['num_steps']} | {r['nfe']} | {r['num_images']} | "
                     f"{r['fid']:.3f} ± {r['fid_err']:.3f} |")
    return "\n".join(lines)


def gmm_reference(gmm, extractor, n: int = 20_000, seed: int = 0) -> ReferenceStats:
    """FID-digits statistics of ``n`` exact samples of the mixture (quantised like generated images)."""
    x0 = gmm.sample_data(n, generator=torch.Generator().manual_seed(seed))
    info = {"model": "digits-gmm", "exact_samples": n, "seed": seed, "extractor": EXTRACTOR_NAME}
    return reference_stats(quantize(x0), extractor, provenance=info, keep_features=False)


def write_references(extractor) -> None:
    """(Re)write the shipped statistics: the train split and the mixture's exact samples."""
    from edmbench.pretrained import load

    for name, stats in (("digits-train-stats.npz", train_reference(extractor)),
                        ("digits-gmm-stats.npz", gmm_reference(load("digits-gmm"), extractor))):
        save_reference(PRETRAINED_DIR / name, stats)
        print(f"wrote {name}: n={stats.n}, dim={stats.dim}")


def gmm_rows(n: int, extractor) -> list[dict]:
    """The exact companion: its own floor (n exact samples, seed 1) and sampler rows, against its
    exact-sample statistics, so the gap is pure sampler error."""
    from edmbench.metrics.stats import load_reference
    from edmbench.pretrained import load

    gmm, reference = load("digits-gmm"), load_reference(PRETRAINED_DIR / "digits-gmm-stats.npz")
    exact = quantize(gmm.sample_data(n, generator=torch.Generator().manual_seed(1)))
    floor = fid_with_error(extract_features(extractor, exact), reference)
    rows = [{"model": "digits-gmm (exact samples)", "sampler": "-", "num_steps": "-", "nfe": "-",
             "num_images": n, "fid": floor.fid, "fid_err": floor.fid_err}]
    sweep = (("euler", 10), ("heun", 18))
    return rows + [{"model": "digits-gmm", **r} for r in sampler_sweep(gmm, n, reference, extractor, sweep)]


def summary(rows: list[dict], floor: RungResult, accuracy: float, cond_n: int) -> dict:
    """The issue's checks: Heun-35 / floor, Euler-10 - Heun-35 against the summed error bars, accuracy."""
    heun = next(r for r in rows if r["model"] == "digits-edm-uncond" and r["nfe"] == 35)
    euler = next(r for r in rows if r["model"] == "digits-edm-uncond" and r["nfe"] == 10)
    return {"floor": {"num_images": floor.num_images, "fid": floor.fid, "fid_err": floor.fid_err},
            "heun35_over_floor": heun["fid"] / floor.fid, "euler10_minus_heun35": euler["fid"] - heun["fid"],
            "combined_error": euler["fid_err"] + heun["fid_err"],
            "conditional_accuracy": accuracy, "conditional_n": cond_n}


def main(argv: list[str] | None = None) -> None:
    from edmbench.digits.plots import sample_grid, sampler_plot
    from edmbench.pretrained import load
    from edmbench.provenance import provenance

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-reference", action="store_true", help="rewrite the shipped statistics")
    parser.add_argument("--out-dir", type=Path, default=DOCS_IMG)
    parser.add_argument("--cond-n", type=int, default=1000, help="images for the conditional accuracy")
    parser.add_argument("--quick", action="store_true", help="only Euler-10 and Heun-35")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    extractor = get_extractor(EXTRACTOR_NAME)
    if args.write_reference:
        return write_references(extractor)
    half_a, half_b = real_halves()
    reference = reference_stats(half_b, extractor, keep_features=False)
    floor = fid_with_error(extract_features(extractor, half_a), reference)
    print(f"floor: FID-digits(real half A, half B) = {floor.fid:.3f} ± {floor.fid_err:.3f} "
          f"at n={floor.num_images}")
    rows = []
    for name in ("digits-edm-uncond", "digits-edm-cond"):
        sweep = SWEEP if name == "digits-edm-uncond" and not args.quick else (("euler", 10), ("heun", 18))
        results = sampler_sweep(load(name), floor.num_images, reference, extractor, sweep)
        rows += [{"model": name, **r} for r in results]
    rows += gmm_rows(floor.num_images, extractor)
    accuracy = conditional_accuracy(load("digits-edm-cond"), SamplerConfig(), range(args.cond_n),
                                    extractor.classifier)
    report = summary(rows, floor, accuracy, args.cond_n)
    print(markdown_table(rows, floor))
    print(json.dumps(report, indent=1))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    record = {**report, "rows": rows, "provenance": provenance(device="cpu", dtype="float32"),
              "wall_time_s": round(time.perf_counter() - start, 1)}
    (args.out_dir / "digits-eval.json").write_text(json.dumps(record, indent=1) + "\n")
    uncond_rows = [r for r in rows if r["model"] == "digits-edm-uncond"]
    sampler_plot(uncond_rows, floor, args.out_dir / "digits-samplers.png")
    sample_grid(load("digits-edm-uncond"), load("digits-edm-cond"), args.out_dir / "digits-grid.png")


if __name__ == "__main__":
    main()
