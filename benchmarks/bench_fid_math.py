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

Row mode (``--row-mode``, image counts n <= D, where pruning rungs on Inception features sit): the stream
keeps the rotated rows and solves [m - 1, m - 1] projected Grams; printed beside the [D, D] route
(``FIDStream(row_limit=0)``), both against an SVD oracle of the centred rotated rows, and beside one FID
from (mu, Sigma) (whose cost does not depend on n).

    python benchmarks/bench_fid_math.py [--dim 2048] [--num-images 4000 50000] [--groups 10] [--old-jackknife]
                                        [--row-mode 250 500 1000 2000]
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


def svd_leave_one_out(rows: np.ndarray, groups: np.ndarray, k: int, reference) -> np.ndarray:
    """The oracle at any rank: Tr((A Sigma A)^(1/2)) = the singular values of the centred rotated rows
    over sqrt(n - 1), for all rows and with each group left out."""
    out = []
    for part in [rows, *(rows[groups != g] for g in range(k))]:
        x = part - reference.mu
        centred = x - x.mean(0)
        root = np.linalg.svd(centred @ reference.sqrt_sigma, compute_uv=False).sum() / np.sqrt(len(part) - 1)
        out.append((x.mean(0) ** 2).sum() + (centred**2).sum() / (len(part) - 1)
                   + np.trace(reference.sigma) - 2 * root)
    return np.array(out)


def _max_rel(values: np.ndarray, oracle: np.ndarray) -> float:
    return float(np.max(np.abs(values - oracle) / np.abs(oracle)))


def row_mode(d: int, n: int, k: int) -> dict:
    """n <= D: the stream's row mode (Grams of size ~n) vs the [D, D] route (``row_limit=0``), both against
    the SVD oracle, beside one FID from (mu, Sigma) (which costs D^3 whatever n is). BLAS on one thread;
    the jackknife's K + 1 solves run concurrently, one per core (``trace_roots``)."""
    from threadpoolctl import threadpool_limits

    from edmbench.metrics import fid as F
    from edmbench.metrics.stats import StreamingStats

    with threadpool_limits(limits=1, user_api="blas"):
        return _row_mode(d, n, k, F, StreamingStats)


def _row_mode(d: int, n: int, k: int, F, StreamingStats) -> dict:
    rng = np.random.default_rng(0)
    reference = StreamingStats().update(_spectral_rows(d + 1, d, 1.2, rng)).to_reference()
    _ = reference.sqrt_sigma
    rows = _spectral_rows(n, d, 1.0, rng)
    gen = StreamingStats().update(rows)
    _, t_one = _timed(lambda: F.frechet_distance(gen.mean, gen.cov, reference.mu, reference.sigma,
                                                 sqrt_sigma2=reference.sqrt_sigma))
    oracle = svd_leave_one_out(rows, np.arange(n) % k, k, reference)
    out = {"n": n, "t_one": t_one}
    for name, limit in (("rows", None), ("dense", 0)):
        stream = F.FIDStream(reference, groups=k, row_limit=limit)
        _, t_fold = _timed(lambda stream=stream: (stream.update(rows), stream.flush()))
        jack, t_jack = _timed(stream.jackknife)
        out[name] = {"t_fold": t_fold, "t_jack": t_jack,
                     "rel": _max_rel(np.concatenate([[jack.full], jack.loo]), oracle)}
    print(f"{n:>6d} {out['rows']['t_fold']:9.2f}s {out['rows']['t_jack']:9.2f}s {out['rows']['rel']:9.1e} "
          f"{out['dense']['t_fold']:9.2f}s {out['dense']['t_jack']:9.2f}s {out['dense']['rel']:9.1e} "
          f"{t_one:9.2f}s {out['rows']['t_jack'] / t_one:8.2f}x "
          f"{out['dense']['t_jack'] / out['rows']['t_jack']:8.1f}x")
    return out


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
    parser.add_argument("--row-mode", type=int, nargs="*", default=[250, 500, 1000, 2000],
                        help="image counts <= D at which to compare row mode with the [D, D] route")
    args = parser.parse_args(argv)

    import torch_fidelity.metric_fid  # noqa: F401 -- imported before timing

    out = [run(args.dim, n, args.groups, args.old_jackknife) for n in args.num_images]
    counts = [n for n in args.row_mode if n <= args.dim]
    if counts:
        from edmbench.metrics.fid import usable_cores

        print(f"\nRow mode (n <= D = {args.dim}: the stream keeps the rotated rows and solves [m - 1, m - 1] "
              f"Grams) vs the [D, D] route, jackknife concurrent on {usable_cores()} cores, max relative "
              "difference of the K + 1 FIDs to the SVD oracle; one FID from (mu, Sigma), 1 thread")
        print(f"{'n':>6s} {'rows fold':>10s} {'rows jack':>10s} {'rows err':>9s} {'[D,D] fold':>10s} "
              f"{'[D,D] jack':>10s} {'[D,D] err':>9s} {'one FID':>10s} {'jack/FID':>9s} {'speed-up':>9s}")
        out += [row_mode(args.dim, n, args.groups) for n in counts]
    return out


if __name__ == "__main__":
    main()
