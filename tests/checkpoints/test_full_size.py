"""Full-size round trip (slow): the released CIFAR-10 DDPM++ configuration with random weights goes
pickle -> convert -> load with identical outputs (the tiny-network version runs in the default suite)."""

from __future__ import annotations

import pytest
import torch

import edmbench
from edmbench.cli import main as cli_main
from edmbench.denoisers.precond import build_precond
from edmbench.pretrained import read_manifest


@pytest.mark.slow
def test_full_size_cifar10_pickle_convert_load_round_trip(kit, tmp_path) -> None:
    entry = read_manifest()["edm-cifar10-32x32-cond-vp"]
    torch.manual_seed(0)
    net = build_precond(entry.extra["precond"], entry.extra["config"]).eval()
    src, out = tmp_path / "edm.pkl", tmp_path / "edm.safetensors"
    src.write_bytes(kit.edm_pickle_bytes(net))
    assert cli_main(["convert", str(src), str(out)]) == 0
    x, sigma, labels = torch.randn(2, 3, 32, 32), torch.tensor([0.1, 10.0]), torch.eye(10)[:2]
    with torch.no_grad():
        expected = net(x, sigma, labels)
        assert torch.equal(edmbench.load(src)(x, sigma, labels), expected)
        assert torch.equal(edmbench.load(out)(x, sigma, labels), expected)
