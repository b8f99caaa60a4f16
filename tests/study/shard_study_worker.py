"""One rank of a sharded study for tests/study/test_sharded_study.py (run as a script, one process per rank).

Usage: shard_study_worker.py OUT_DIR MODE REFERENCE.npz. MODE: 'reference' (write the reference statistics,
one process), 'run' (the whole study) or 'die' (rank 1 exits after the first rung of its first trial).
RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT in the environment, as torchrun sets them; WORLD_SIZE=1 is the
one-process run. The study: the exact digits GMM (``digits-gmm``), a float64 projection extractor
(``ProjectionExtractor``), TPE seeded, 3 trials of 120 images with a rung at 80 (every leave-one-group-out
set has more rows than the 24 features). Rank 0 writes the trials it finds in the storage to
OUT_DIR/rank0.json; other ranks write how many trials they took part in.
"""

import json
import os
import sys
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

import edmbench.study.distributed as distributed
from edmbench.metrics.features import register_extractor
from edmbench.metrics.shard import ShardError
from edmbench.study.runner import RunOptions, run_study
from edmbench.study.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
# 10 divides every rank's share of every segment (40 + 40 images to the rung at 80, then 20 + 20), so each
# rank's batches hold the same seeds as the one-process run's (batch invariance is not what is tested here).
BATCH = 10
EXTRACTOR = "test-projection"


class ProjectionExtractor(FeatureExtractorBase):
    """uint8 [B, 3, 8, 8] -> tanh(x / 255 @ W / 8): 24 smooth float64 features with full-rank covariances.
    The digits classifier's 64 features have a rank-deficient reference covariance (eigenvalues down to
    1e-17 of the largest), whose square roots turn float64 summation-order rounding into ~1e-8 changes of
    the FID; here only the sharding can move the value."""

    def __init__(self, name: str, features_list, **kwargs) -> None:
        super().__init__(name, features_list)
        self.register_buffer("weight", torch.randn(3 * 8 * 8, 24, dtype=torch.float64,
                                                   generator=torch.Generator().manual_seed(5)))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.tanh(x.flatten(1).to(torch.float64) / 255 @ self.weight / 8),)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("24",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "24"


register_extractor(EXTRACTOR, ProjectionExtractor)
SPEC = f"""
[study]
name = "sharded"

[denoiser]
model = "digits-gmm"
class_policy = "none"

[metric]
extractor = "{EXTRACTOR}"
reference = "REFERENCE"
num_images = 120
rungs = [80]

[fixed]
sampler = "heun"

[space.num_steps]
type = "int"
low = 3
high = 8

[space.s_churn]
type = "float"
low = 0.0
high = 3.0

[search]
sampler = "tpe"
seed = 3
n_startup_trials = 2

[budget]
n_trials = 3
"""


def _follow_then_die(scorer, shard):
    """Rank 1 in 'die' mode: take part in the first trial up to its first rung, then vanish."""
    work = shard.broadcast_object(None)
    from edmbench.sampling import SamplerConfig

    for _ in scorer.rungs(SamplerConfig.from_dict(work.config), range(*work.seeds), work.rungs):
        os._exit(3)


def make_reference(path: Path) -> None:
    """Statistics of 400 digits-gmm images (Heun, 18 steps; seeds no trial uses) under the projection."""
    from edmbench.generate import generate_images
    from edmbench.metrics.features import get_extractor
    from edmbench.metrics.reference import compute_reference
    from edmbench.metrics.stats import save_reference
    from edmbench.pretrained import load
    from edmbench.sampling import SamplerConfig

    batches = generate_images(load("digits-gmm"), SamplerConfig(sampler="heun", num_steps=18),
                              range(5000, 5400), batch_size=100, class_policy=None)
    save_reference(path, compute_reference((b.images for b in batches), get_extractor(EXTRACTOR)))


def _trials(storage: str) -> list[dict]:
    import optuna

    study = optuna.load_study(study_name="sharded", storage=storage)
    return [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "intermediate": {str(k): v for k, v in t.intermediate_values.items()},
             "result": t.user_attrs.get("result")} for t in study.get_trials(deepcopy=False)]


def main(out: str, mode: str, reference: str) -> int:
    torch.set_num_threads(1)
    if mode == "reference":
        make_reference(Path(reference))
        return 0
    rank = int(os.environ.get("RANK", "0"))
    out_dir = Path(out)
    storage = f"sqlite:///{out_dir / 'study.db'}"
    followed = []
    if mode == "die" and rank == 1:
        distributed.follow = _follow_then_die
    else:
        inner = distributed.follow
        distributed.follow = lambda scorer, shard: followed.append(inner(scorer, shard)) or followed[-1]
    spec = parse_spec(SPEC.replace("REFERENCE", reference))
    report: dict = {}
    try:
        run_study(spec, RunOptions(storage=storage, runs_dir=str(out_dir), progress=False, batch_size=BATCH))
    except ShardError as err:
        report["error"] = str(err)
    except SystemExit as exc:  # ranks > 0 leave the study this way
        report["exit"] = exc.code
    if rank == 0:
        report["trials"] = _trials(storage)
    report["followed"] = followed
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
