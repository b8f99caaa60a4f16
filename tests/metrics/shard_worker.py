"""One rank of a sharded evaluation for tests/metrics/test_shard.py (run as a script, one process per rank).

Usage: shard_worker.py OUT.json MODE [WEIGHTS]. MODE: 'full' (all rungs), 'prune' (rank 0's consumer stops
after the first rung) or 'die' (rank 1 exits after the first rung: gloo reports the closed connection at
once; otherwise the 120 s collective timeout, longer than any stretch between rungs here, bounds the wait).
RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT in the environment (as torchrun sets them); WORLD_SIZE=1: one
process.
"""

import json
import os
import sys

import torch

from edmbench.denoisers.analytic import GaussianDenoiser
from edmbench.denoisers.base import CountingDenoiser
from edmbench.generate import quantize
from edmbench.metrics.evaluate import score_rungs
from edmbench.metrics.kid_pr import KIDPROptions
from edmbench.metrics.reference import compute_reference
from edmbench.metrics.shard import Shard, ShardError
from edmbench.sampling import SamplerConfig

SEEDS = range(100, 330)  # 230 images
RUNGS = [40, 161]  # segments of 40, 121 and 69 images (uneven halves). D = 48 features: the first rung is in
# row mode (40 <= D: the ranks gather their rows); at the second the ranks fold their rows into scatters
# (the merged 161 > D) before the all-reduce; leave-one-out sets there have 3 D rows (well-conditioned)
DIM = 48
BATCH = 16


class Projection(torch.nn.Module):
    """A fixed random projection of the pixels to DIM smooth features: full-rank covariances, so the FID's
    eigenvalue square roots do not amplify rounding (random-conv's dead features give ~1e-17 eigenvalues
    whose square roots move the FID by ~1e-10 under any change of summation order)."""

    def __init__(self) -> None:
        super().__init__()
        weight = torch.randn(3 * 8 * 8, DIM, generator=torch.Generator().manual_seed(5))
        self.register_buffer("weight", weight)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.tanh(images.flatten(1).to(torch.float64) / 255 @ self.weight.double() / 8),)


def main(out: str, mode: str, weights: str | None = None) -> int:
    torch.set_num_threads(1)
    shard = Shard.from_env(weights=[float(w) for w in weights.split(",")] if weights else None, timeout_s=120)
    mean = torch.empty(3, 8, 8).uniform_(-0.6, 0.6, generator=torch.Generator().manual_seed(0))
    denoiser = CountingDenoiser(GaussianDenoiser((3, 8, 8), mean=mean, std=0.3))
    extractor = Projection()
    noise = torch.randn(120, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    reference = compute_reference([quantize(mean + 0.3 * noise)], extractor, keep_features=1000)
    options = KIDPROptions(kid=True, kid_subsets=10, kid_subset_size=15)
    rank = 0 if shard is None else shard.rank
    generated = []
    results = []
    try:
        for result in score_rungs(denoiser, SamplerConfig(sampler="heun", num_steps=3), SEEDS, extractor,
                                  reference, RUNGS, batch_size=BATCH, kid_pr=options, shard=shard,
                                  on_batch=lambda b: generated.extend(b.seeds)):
            if mode == "die" and rank == 1:
                os._exit(3)
            results.append({"num_images": result.num_images, "fid": result.fid,
                            "fid_loo": list(result.fid_loo), "kid": result.extra["kid"], "nfe": result.nfe})
            if mode == "prune" and rank == 0:
                break
    except ShardError as err:
        results.append({"error": str(err)})
    with open(f"{out}.{rank}", "w") as fh:
        json.dump({"results": results, "generated": generated,
                   "sample_evaluations": denoiser.sample_evaluations}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
