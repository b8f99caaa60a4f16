"""Throughput and peak memory of generate -> features -> statistics (issue 4's benchmark).

Each image count runs in a fresh subprocess: an exact Gaussian denoiser (3x32x32, Heun, 3 steps = 5 NFE)
-> EDM quantisation -> extractor -> ``fid_at_rungs`` (jackknife groups, rungs at n/2 and n). After a
warm-up, the process's peak-RSS mark is reset (``/proc/self/clear_refs``), so the figures are the scoring
run's own; a second, traced pass measures the tracemalloc peak (numpy and Python allocations). Peak memory
must not grow with n: the script prints peak(50k) / peak(5k) for both and fails if the RSS ratio exceeds 1.1.

    python benchmarks/bench_metrics.py                       # CPU, random-conv, 5k vs 50k
    python benchmarks/bench_metrics.py --device cuda --extractor inception-random --groups 1
                                          # real Inception architecture, random weights (GPU)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

MAX_RATIO = 1.1


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS
        return True
    except OSError:
        return False


def _register_random_inception() -> str:
    """torch-fidelity's Inception-v3 architecture with its random initial weights (speed only)."""
    import torch_fidelity.feature_extractor_inceptionv3 as inc

    from edmbench.metrics.features import register_extractor

    class RandomInception(inc.FeatureExtractorInceptionV3):
        def __init__(self, name, features_list, **kwargs):
            saved = inc.load_state_dict_from_url
            inc.load_state_dict_from_url = lambda *a, **k: None  # no download: keep the random init
            try:
                super().__init__(name, features_list, **kwargs)
            finally:
                inc.load_state_dict_from_url = saved

        def load_state_dict(self, state_dict, *args, **kwargs):
            return None if state_dict is None else super().load_state_dict(state_dict, *args, **kwargs)

    RandomInception.__qualname__ = "RandomInception"
    register_extractor("inception-random", RandomInception)
    return "inception-random"


def worker(n: int, args: argparse.Namespace) -> dict:
    import torch

    from edmbench.denoisers.analytic import GaussianDenoiser
    from edmbench.generate import generate_images, quantize
    from edmbench.metrics.features import get_extractor
    from edmbench.metrics.fid import fid_at_rungs
    from edmbench.metrics.reference import compute_reference
    from edmbench.sampling import SamplerConfig

    torch.set_num_threads(args.threads)
    name = _register_random_inception() if args.extractor == "inception-random" else args.extractor
    extractor = get_extractor(name, device=args.device)
    mean = torch.empty(3, 32, 32).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(0))
    denoiser = GaussianDenoiser((3, 32, 32), mean=mean.to(args.device), std=0.4)
    data = quantize(denoiser.mean.cpu() + 0.4 * torch.randn(args.ref_images, 3, 32, 32, dtype=torch.float64,
                                                             generator=torch.Generator().manual_seed(1)))
    reference = compute_reference(data.split(args.batch_size), extractor)
    config = SamplerConfig(sampler="heun", num_steps=3)

    def run(seeds):
        stream = generate_images(denoiser, config, seeds, batch_size=args.batch_size, device=args.device)
        return list(fid_at_rungs(stream, extractor, reference, rungs=[len(seeds) // 2, len(seeds)],
                                 uncertainty="jackknife" if args.groups > 1 else None, groups=args.groups))

    run(range(10**6, 10**6 + 2 * args.batch_size))  # warm-up: imports, allocator, first batches
    # pass 1: time and RSS (no tracing: tracemalloc's own tables would inflate the RSS)
    reset = _reset_peak_rss()
    baseline_kb = _status_kb("VmRSS")
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    results = run(range(n))
    seconds = time.perf_counter() - start
    peak_kb = _status_kb("VmHWM")
    out = {"n": n, "seconds": seconds, "images_per_s": n / seconds, "fid": results[-1].fid,
           "fid_err": results[-1].fid_err, "peak_rss_mb": peak_kb / 1024,
           "rss_increase_mb": (peak_kb - baseline_kb) / 1024 if reset else None}
    if args.device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    # pass 2: the peak of numpy and Python allocations, traced
    tracemalloc.start()
    run(range(n))
    out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5000,50000", help="two image counts, small then large")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--extractor", default="random-conv", help="random-conv or inception-random")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--groups", type=int, default=10, help="jackknife groups; 1 = no error bar (each "
                        "2048-d FID costs seconds, so use 1 to time the Inception stream itself)")
    parser.add_argument("--ref-images", type=int, default=1000, help="images behind the reference stats")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args)))
        return 0
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        cmd = [sys.executable, __file__, "--worker", str(n), "--device", args.device, "--extractor",
               args.extractor, "--batch-size", str(args.batch_size), "--threads", str(args.threads),
               "--groups", str(args.groups), "--ref-images", str(args.ref_images)]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    bars = f"jackknife ({args.groups} groups)" if args.groups > 1 else "no error bar"
    print(f"generate -> {args.extractor} -> streaming stats + FID, {bars}, on {args.device} (Gaussian "
          f"denoiser 3x32x32, Heun 3 steps = 5 NFE, batch {args.batch_size}, {args.threads} thread(s))")
    print(f"{'n':>7} {'s':>8} {'img/s':>8} {'FID':>9} {'peak RSS MB':>12} {'RSS incr MB':>12} "
          f"{'traced MB':>10} {'cuda MB':>8}")
    for r in rows:
        print(f"{r['n']:>7} {r['seconds']:>8.1f} {r['images_per_s']:>8.1f} {r['fid']:>9.4f} "
              f"{r['peak_rss_mb']:>12.1f} {_fmt(r['rss_increase_mb']):>12} {r['tracemalloc_peak_mb']:>10.1f} "
              f"{_fmt(r.get('cuda_peak_mb')):>8}")
    small, large = rows[0], rows[-1]
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    traced = large["tracemalloc_peak_mb"] / small["tracemalloc_peak_mb"]
    print(f"peak memory ratio {large['n']} / {small['n']}: RSS {ratio:.3f}, tracemalloc {traced:.3f} "
          f"(limit {MAX_RATIO}) -> {'OK' if ratio <= MAX_RATIO else 'FAIL'}")
    return 0 if ratio <= MAX_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
