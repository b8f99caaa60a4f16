"""FID linear algebra at Inception size (D = 2048, CPU): one FID and the 10-group jackknife, side by side.

- torch-fidelity: ``fid_statistics_to_metric`` (Schur ``sqrtm`` of the non-symmetric product Sigma Sigma_r);
- old edmbench: the jackknife ran K + 1 of those (plus K x (K-1) merges of [D, D] group statistics);
  printed as (K + 1) x the measured torch-fidelity FID, marked "est." (``--old-jackknife`` times it);
- naive jackknife: K + 1 FIDs from (mu, Sigma) with the cached Sigma_r^(1/2), each Sigma_{-k} re-formed
  from per-group sums: two [D, D] products and one ``eigvalsh`` each (also the accuracy oracle);
- new edmbench one FID: from (mu, Sigma) with Sigma_r^(1/2) computed once per reference: two [D, D]
  products + one symmetric ``eigvalsh``;
- new edmbench jackknife: the rows are rotated by Sigma_r^(1/2) once, at update time (n D^2), into centred
  group moments; a rung downdates them (no products, no merges) and runs K + 1 ``eigvalsh``, serially or
  concurrently (one single-threaded solve per core, ``edmbench.metrics.fid.trace_roots``).

The floor of an exact jackknife is K + 1 eigenvalue solves: printed as (K + 1) x one measured ``eigvalsh``
beside the jackknife / one-FID ratio (target <= 2x). Every row but "concurrent" runs with BLAS limited to
one thread (a multi-threaded LAPACK on a shared 2-core machine is many times slower, not faster).
Features are synthetic with decaying spectra (lambda_k ~ k^-1.2 for the reference, k^-1.0 generated).

    python benchmarks/bench_fid_math.py [--dim 2048] [--num-images 4000 50000] [--groups 10] [--old-jackknife]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _spectral_rows(n: int, d: int, power: float, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (rng.normal(size=(n, d)) * np.arange(1, d + 1) ** (-power / 2)) @ q.T + 0.3


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def naive_leave_one_out(rows: np.ndarray, groups: np.ndarray, k: int, reference) -> np.ndarray:
    """FID of all rows, then of all rows but group g for each g: (mu, Sigma) re-formed from per-group sums."""
    from edmbench.metrics.fid import frechet_distance

    shift = rows.mean(0)  # sums of shifted rows: no cancellation against a far-away mean
    sums = [(rows[groups == g] - shift) for g in range(k)]
    parts = [(len(x), x.sum(0), x.T @ x) for x in sums]
    n_all, s_all, q_all = (sum(p[i] for p in parts) for i in range(3))
    out = []
    for n, s, q in [(n_all, s_all, q_all), *((n_all - a, s_all - b, q_all - c) for a, b, c in parts)]:
        mean = s / n
        cov = (q - n * np.outer(mean, mean)) / (n - 1)
        out.append(frechet_distance(mean + shift, cov, reference.mu, reference.sigma,
                                    sqrt_sigma2=reference.sqrt_sigma))
    return np.array(out)


def run(d: int, n: int, k: int, old_jackknife: bool) -> dict:
    from threadpoolctl import threadpool_limits

    from edmbench.metrics import fid as F
    from edmbench.metrics.stats import StreamingStats

    rng = np.random.default_rng(0)
    reference = StreamingStats().update(_spectral_rows(max(n, d + 1), d, 1.2, rng)).to_reference()
    rows = _spectral_rows(n, d, 1.0, rng)
    gen = StreamingStats().update(rows)
    cores = F.usable_cores()
    with threadpool_limits(limits=1, user_api="blas"):
        _, t_root = _timed(lambda: reference.sqrt_sigma)  # once per reference (cached)
        stream = F.FIDStream(reference, groups=k)
        _, t_fold = _timed(lambda: (stream.update(rows), stream.flush()))
        one_fid, t_one = _timed(lambda: F.frechet_distance(gen.mean, gen.cov, reference.mu, reference.sigma,
                                                         sqrt_sigma2=reference.sqrt_sigma))
        inner = reference.sqrt_sigma @ gen.cov @ reference.sqrt_sigma
        _, t_eig = _timed(lambda: np.linalg.eigvalsh((inner + inner.T) / 2))
        stream.geometry.workers = 1
        jack, t_serial = _timed(stream.jackknife)
        naive, t_naive = _timed(lambda: naive_leave_one_out(rows, np.arange(n) % k, k, reference))
        tf_fid, t_tf = _timed(lambda: F.torch_fidelity_frechet_distance(gen.mean, gen.cov, reference.mu,
                                                                      reference.sigma))
        t_old, old_note = (k + 1) * t_tf, " (est.: (K+1) x torch-fidelity FID)"
        if old_jackknife:
            _, t_old = _timed(lambda: [F.torch_fidelity_frechet_distance(
                gen.mean, gen.cov, reference.mu, reference.sigma) for _ in range(k + 1)])
            old_note = ""
    stream.geometry.workers = cores
    jack_c, t_conc = _timed(stream.jackknife)
    values, oracle = np.concatenate([[jack.full], jack.loo]), naive
    rel_naive = float(np.max(np.abs(values - oracle) / np.abs(oracle)))
    rel_conc = float(np.max(np.abs(np.concatenate([[jack_c.full], jack_c.loo]) - values) / np.abs(values)))
    rel_tf = abs(one_fid - tf_fid) / abs(tf_fid)
    best = min(t_serial, t_conc)
    print(f"\nD = {d}, n = {n}, K = {k} groups, {cores} usable cores, load average {os.getloadavg()[0]:.1f}")
    print(f"FID new {one_fid:.6f} vs torch-fidelity {tf_fid:.6f} (relative difference {rel_tf:.1e}); "
          f"jackknife vs naive leave-one-group-out: max relative difference {rel_naive:.1e} "
          f"(target <= 1e-8); "
          f"concurrent vs serial {rel_conc:.1e}")
    print(f"once per reference: Sigma_r^(1/2) {t_root:.2f} s; {n} rows rotated into {k} groups "
          f"{t_fold:.2f} s (n D^2, at update time)")
    print(f"{'':34s}{'one FID':>10s}{'jackknife':>12s}")
    print(f"{'torch-fidelity':34s}{t_tf:9.2f}s")
    print(f"{'old edmbench':34s}{t_tf:9.2f}s{t_old:11.2f}s{old_note}")
    print(f"{'naive (cached root, K+1 FIDs)':34s}{'':10s}{t_naive:11.2f}s")
    print(f"{'new, 1 thread':34s}{t_one:9.2f}s{t_serial:11.2f}s")
    print(f"{f'new, concurrent ({cores} x 1 thread)':34s}{'':10s}{t_conc:11.2f}s")
    print(f"one FID: torch-fidelity / new = {t_tf / t_one:.1f}x (target >= 3x); jackknife: old / new = "
          f"{t_old / best:.1f}x, naive / new = {t_naive / best:.1f}x")
    print(f"jackknife / one FID = {best / t_one:.2f}x (target <= 2x); floor of an exact jackknife: K + 1 = "
          f"{k + 1} eigvalsh x {t_eig:.2f} s = {(k + 1) * t_eig:.2f} s = {(k + 1) * t_eig / t_one:.2f}x "
          f"one FID on one core, {(k + 1) * t_eig / t_one / cores:.2f}x with {cores} cores in parallel")
    return {"relative_difference": rel_tf, "rel_naive": rel_naive, "t_tf": t_tf, "t_one": t_one,
            "t_serial": t_serial, "t_conc": t_conc, "t_eig": t_eig, "t_old": t_old, "t_naive": t_naive}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--num-images", type=int, nargs="+", default=[4000])
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--old-jackknife", action="store_true", help="time the old K+1 torch-fidelity FIDs")
    args = parser.parse_args(argv)

    import torch_fidelity.metric_fid  # noqa: F401 -- imported before timing

    return [run(args.dim, n, args.groups, args.old_jackknife) for n in args.num_images]


if __name__ == "__main__":
    main()
