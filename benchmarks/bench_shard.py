"""Sharded evaluation on CPU (gloo): 1, 2 and 4 processes on a fixed image count, side by side.

Each run starts ``P`` ranks the way torchrun does (RANK / WORLD_SIZE / MASTER_ADDR in the environment), each
with one thread; every rank samples its share of ``--num-images`` seeds (exact Gaussian denoiser, Heun),
extracts features with a fixed random projection to ``--dim`` features and joins the merge at each rung
(while the merged count is at most D, row mode: a gather of the ranks' rotated rows; past it an all-reduce
of K x [D, D] float64 moments; rank 0 computes the FID). Printed: wall
time, speed-up over one process, and per rank the seconds spent inside collectives (merge + waiting at
the rung for the slowest rank). On a machine with fewer free cores than ranks the speed-up is bounded by the
cores, not by the merge.

    python benchmarks/bench_shard.py [--num-images 2000] [--dim 2048] [--ranks 1 2 4] [--rungs 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rank_main(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from edmbench.denoisers.analytic import GaussianDenoiser
    from edmbench.metrics.evaluate import score_rungs
    from edmbench.metrics.shard import Shard
    from edmbench.metrics.stats import ReferenceStats
    from edmbench.sampling import SamplerConfig

    torch.set_num_threads(1)

    class Projection(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            gen = torch.Generator().manual_seed(0)
            self.register_buffer("w", torch.randn(3 * 16 * 16, args.dim, generator=gen))

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor]:
            return (torch.tanh(images.flatten(1).float() / 255 @ self.w / 8),)

    class TimedShard(Shard):
        spent = 0.0

        def _run(self, what, fn, *a):
            start = time.perf_counter()
            try:
                return super()._run(what, fn, *a)
            finally:
                TimedShard.spent += time.perf_counter() - start

    base = Shard.from_env(timeout_s=600)
    shard = None if base is None else TimedShard(base.rank, base.world_size, timeout_s=600)
    denoiser = GaussianDenoiser((3, 16, 16), mean=torch.zeros(3, 16, 16), std=0.4)
    reference = ReferenceStats(np.full(args.dim, 0.1), np.eye(args.dim) * 0.05)
    start = time.perf_counter()
    results = list(score_rungs(denoiser, SamplerConfig(sampler="heun", num_steps=10), range(args.num_images),
                               Projection(), reference, args.rungs, batch_size=64, shard=shard))
    wall = time.perf_counter() - start
    rank = 0 if shard is None else shard.rank
    Path(f"{args.out}.{rank}").write_text(json.dumps({"wall_time_s": wall, "collective_s": TimedShard.spent,
                                                      "fid": results[-1].fid}))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(ranks: int, argv: list[str], out: str) -> tuple[float, list[dict]]:
    port, procs = str(_free_port()), []
    start = time.perf_counter()
    for rank in range(ranks):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(ranks), "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, __file__, "--rank-worker", "--out", out, *argv]
        procs.append(subprocess.Popen(cmd, env=env))
    for proc in procs:
        if proc.wait(timeout=3600):
            raise SystemExit(f"rank exited with status {proc.returncode}")
    wall = time.perf_counter() - start
    return wall, [json.loads(Path(f"{out}.{r}").read_text()) for r in range(ranks)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--rungs", type=int, nargs="*", default=[1000])
    parser.add_argument("--ranks", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--rank-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rank_worker:
        return _rank_main(args)
    passed = ["--num-images", str(args.num_images), "--dim", str(args.dim), "--rungs", *map(str, args.rungs)]
    print(f"{args.num_images} images, D = {args.dim}, rungs {args.rungs} + final, {os.cpu_count()} CPUs")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in args.ranks:
            wall, reports = _launch(ranks, passed, f"{tmp}/r{ranks}.json")
            inner = max(r["wall_time_s"] for r in reports)
            base = base or inner
            spent = ", ".join(f"{r['collective_s']:.2f}" for r in reports)
            print(f"{ranks} rank(s): evaluation {inner:7.2f} s (speed-up {base / inner:4.2f}x), process wall "
                  f"{wall:7.2f} s; FID {reports[0]['fid']:.8f}; in collectives per rank [{spent}] s")


if __name__ == "__main__":
    main()
