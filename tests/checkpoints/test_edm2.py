"""EDM2 (pixel-space img64 and latent img512 networks): published sizes, keys, pickles, native round trip.

Oracles: EDM2 parameter counts of edm-facts.md Sec. 6.4 (XS..XXL = 124.7/280.2/497.8/777.5/1119.3/1523.2 M,
the EDM2 paper's sizes), the state-dict prefixes of Sec. 8.2, and exact magnitude-preservation identities.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from edmbench.denoisers.edm2 import EDM2Precond, mp_cat, mp_sum, normalize
from edmbench.denoisers.layers import skip_init
from edmbench.denoisers.native import load_native, read_native_config, save_native
from edmbench.denoisers.pickles import ALLOWED_GLOBALS, load_edm_pickle
from edmbench.denoisers.precond import build_precond

TINY = dict(model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], channels_per_head=16)


def tiny_edm2(seed: int = 0) -> EDM2Precond:
    torch.manual_seed(seed)
    net = EDM2Precond(8, 3, 10, **TINY).eval()
    with torch.no_grad():  # EDM2 zero-initialises the scalar gains; make every path matter
        for p in net.parameters():
            if p.ndim == 0:
                p.normal_(0, 0.5)
    return net


@pytest.mark.parametrize(
    "size, channels, dropout, millions",
    [
        ("xs", 128, 0.0, 124.7),
        ("s", 192, 0.0, 280.2),
        ("m", 256, 0.1, 497.8),
        ("l", 320, 0.1, 777.5),
        ("xl", 384, 0.1, 1119.3),
        ("xxl", 448, 0.1, 1523.2),
    ],
)
def test_img512_sizes_match_published(size, channels, dropout, millions) -> None:
    # img512 nets run at 64x64 with 4 latent channels, 1000 classes (edm-facts Sec. 8.2-8.3)
    with torch.device("meta"), skip_init():
        net = build_precond(
            "Precond",
            dict(img_resolution=64, img_channels=4, label_dim=1000, model_channels=channels, dropout=dropout),
        )
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 1) == millions
    keys = list(net.state_dict())
    assert all(k.startswith("unet.") for k in keys[:-3])
    assert keys[-3:] == ["logvar_fourier.freqs", "logvar_fourier.phases", "logvar_linear.weight"]


def test_magnitude_preserving_identities() -> None:
    a = torch.zeros(1, 4, 1, 1, dtype=torch.float64)
    a[0, :2] = math.sqrt(2)  # unit mean square over channels
    b = torch.zeros(1, 4, 1, 1, dtype=torch.float64)
    b[0, 2:] = math.sqrt(2)  # orthogonal to a, unit mean square
    for t in (0.3, 0.5, 0.8):
        assert mp_sum(a, b, t).square().mean().item() == pytest.approx(1.0, rel=1e-12)
        c = mp_cat(a, torch.ones(1, 6, 1, 1, dtype=torch.float64), t)
        assert c.shape[1] == 10 and c.square().mean().item() == pytest.approx(1.0, rel=1e-12)
    x = torch.randn(3, 5, 2, 2) * 7
    rms = normalize(x).square().mean(dim=(1, 2, 3)).sqrt()
    torch.testing.assert_close(rms, torch.ones(3), rtol=1e-4, atol=0)  # eps = 1e-4 in the denominator


def test_edm2_pickle_loads_with_fp16_weights(kit, write_pickle) -> None:
    net = tiny_edm2()
    data = kit.edm2_pickle_bytes(net)
    found = kit.pickle_globals(data)
    assert {
        ("dnnlib.util", "EasyDict"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
    } <= found
    assert found <= set(ALLOWED_GLOBALS)
    loaded = load_edm_pickle(write_pickle(data))
    assert type(loaded) is EDM2Precond and loaded.provenance["class_name"] == "Precond"
    reference = copy.deepcopy(net).half().float()  # EDM2 stores ema in float16; we compute in float32
    for k, v in reference.state_dict().items():
        assert loaded.state_dict()[k].dtype == torch.float32 and torch.equal(loaded.state_dict()[k], v), k
    x, sigma, labels = torch.randn(3, 3, 8, 8), torch.tensor([0.01, 1.0, 60.0]), torch.eye(10)[:3]
    assert torch.equal(loaded(x, sigma, labels), reference(x, sigma, labels))
    assert (loaded.sigma_min, loaded.sigma_max) == (0.0, math.inf)
    assert torch.equal(loaded.round_sigma(sigma), sigma)


def test_edm2_native_round_trip_and_coefficients(tmp_path) -> None:
    net = tiny_edm2(1)
    path = save_native(net, tmp_path / "edm2.safetensors")
    assert read_native_config(path)["class_name"] == "Precond"
    loaded = load_native(path)
    x, sigma, labels = torch.randn(2, 3, 8, 8), torch.tensor([0.5, 3.0]), torch.eye(10)[:2]
    assert torch.equal(loaded(x, sigma, labels), net(x, sigma, labels))
    # EDM's preconditioning (edm-facts Sec. 8.2, values of Sec. 9.8 at sigma = 1)
    c_skip, c_out, c_in, c_noise = net.coefficients(torch.ones(1, 1, 1, 1))
    torch.testing.assert_close(
        [c_skip.item(), c_out.item(), c_in.item(), c_noise.item()],
        [0.2, 0.4472135955, 0.894427191, 0.0],
        rtol=1e-6,
        atol=1e-7,
    )
