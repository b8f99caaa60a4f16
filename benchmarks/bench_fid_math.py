"""FID linear algebra at Inception size (D = 2048, CPU): one FID and the 10-group jackknife, side by side.

- torch-fidelity: ``fid_statistics_to_metric`` (Schur ``sqrtm`` of the non-symmetric product Sigma Sigma_r);
- old edmbench: the jackknife ran K + 1 of those (plus K x (K-1) merges of [D, D] group statistics);
- new edmbench: Sigma_r^(1/2) once per reference, then one symmetric ``eigvalsh`` per FID; the jackknife
  downdates centred group moments (no merges) and runs K + 1 ``eigvalsh``.

The old jackknife is timed only with ``--old-jackknife`` (K + 1 torch-fidelity FIDs: minutes); otherwise it
is printed as (K + 1) x the measured torch-fidelity FID, marked "est.". Features are synthetic with
decaying spectra (lambda_k ~ k^-1.2 for the reference, k^-1.0 generated).

    python benchmarks/bench_fid_math.py [--dim 2048] [--num-images 4000] [--groups 10] [--old-jackknife]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _spectral_rows(n: int, d: int, power: float, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (rng.normal(size=(n, d)) * np.arange(1, d + 1) ** (-power / 2)) @ q.T + 0.3


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--num-images", type=int, default=4000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--old-jackknife", action="store_true", help="time the old K+1 torch-fidelity FIDs")
    args = parser.parse_args(argv)

    import torch_fidelity.metric_fid  # noqa: F401 -- imported before timing

    from edmbench.metrics.fid import FIDStream, torch_fidelity_frechet_distance
    from edmbench.metrics.stats import StreamingStats

    rng = np.random.default_rng(0)
    d, n, k = args.dim, args.num_images, args.groups
    reference = StreamingStats().update(_spectral_rows(max(n, d + 1), d, 1.2, rng)).to_reference()
    rows = _spectral_rows(n, d, 1.0, rng)
    gen = StreamingStats().update(rows)

    _, t_root = _timed(lambda: reference.sqrt_sigma)  # once per reference (cached)
    stream = FIDStream(reference, groups=k)
    _, t_fold = _timed(lambda: (stream.update(rows), stream.flush()))
    one = FIDStream(reference, groups=1)
    one.update(rows)
    one.flush()
    new_fid, t_new = _timed(lambda: one.result().fid)
    jack, t_jack = _timed(stream.jackknife)
    tf_fid, t_tf = _timed(lambda: torch_fidelity_frechet_distance(gen.mean, gen.cov, reference.mu,
                                                                  reference.sigma))
    if args.old_jackknife:
        _, t_old = _timed(lambda: [torch_fidelity_frechet_distance(gen.mean, gen.cov, reference.mu,
                                                                   reference.sigma) for _ in range(k + 1)])
        old_note = ""
    else:
        t_old, old_note = (k + 1) * t_tf, " (est.: (K+1) x torch-fidelity FID)"
    rel = abs(new_fid - tf_fid) / abs(tf_fid)
    print(f"D = {d}, n = {n}, K = {k} groups; FID new {new_fid:.6f} vs torch-fidelity {tf_fid:.6f} "
          f"(relative difference {rel:.1e}); jackknife full {jack.full:.6f}")
    print(f"once per reference: Sigma_r^(1/2) {t_root:.2f} s; {n} rows into {k} groups {t_fold:.2f} s")
    print(f"{'':24s}{'one FID':>10s}{'jackknife':>12s}")
    print(f"{'torch-fidelity':24s}{t_tf:9.2f}s{'':>12s}")
    print(f"{'old edmbench':24s}{t_tf:9.2f}s{t_old:11.2f}s{old_note}")
    print(f"{'new edmbench':24s}{t_new:9.2f}s{t_jack:11.2f}s")
    print(f"one FID: torch-fidelity / new = {t_tf / t_new:.1f}x (target >= 3x); "
          f"jackknife: old / new = {t_old / t_jack:.1f}x; new jackknife / torch-fidelity one FID = "
          f"{t_jack / t_tf:.2f}x, / new one FID = {t_jack / t_new:.1f}x (K + 1 = {k + 1} eigvalsh)")
    return {"relative_difference": rel, "t_tf": t_tf, "t_new": t_new, "t_jack": t_jack, "t_old": t_old}


if __name__ == "__main__":
    main()
