"""Real NVIDIA checkpoints, when present in the cache (never downloaded by tests).

Place a released file at ``$EDMBENCH_CACHE/<name>.pkl`` (see docs/checkpoints.md) to run these. They
check what the fact sheet could only infer: the globals the real stream uses, the exact state-dict
listing (shared/reference/state-dicts) and a finite, float32 denoiser output.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from edmbench.denoisers.pickles import load_edm_pickle
from edmbench.pretrained import cached_path, read_manifest

LISTINGS = Path(__file__).resolve().parent / "state-dicts"  # copied from shared/reference/state-dicts
RELEASES = sorted(n for n in read_manifest() if n.startswith(("edm-", "baseline-")))


@pytest.mark.weights
@pytest.mark.parametrize("name", RELEASES)
def test_released_checkpoint_loads_strictly(name) -> None:
    entry = read_manifest()[name]
    path = cached_path(entry.url)
    if not path.exists():
        pytest.skip(f"{path} not present (tests never download; see docs/checkpoints.md)")
    net = load_edm_pickle(path)
    if name.startswith("edm-"):  # the baselines' preconditioner is only inferred (edm-facts 6.4)
        assert type(net).__name__ == entry.extra["precond"]
    if "parameters" in entry.extra:
        assert sum(p.numel() for p in net.parameters()) == entry.extra["parameters"]
    listing = LISTINGS / f"{name.replace('afhqv2', 'ffhq')}.txt"
    if listing.exists():
        rows = [line.split("\t") for line in listing.read_text().splitlines() if not line.startswith("#")]
        expected = [(k, [int(d) for d in re.findall(r"\d+", shape)]) for k, shape, *_ in rows]
        assert [(k, list(v.shape)) for k, v in net.state_dict().items()] == expected
    c, h, w = net.image_shape
    x = torch.randn(2, c, h, w) * 5
    labels = torch.eye(net.label_dim)[:2] if net.label_dim else None
    out = net(x, torch.tensor([5.0, 0.5]), labels)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
