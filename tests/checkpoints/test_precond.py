"""Preconditioners: EDM Table 1 coefficients pinned to edm-facts.md Sec. 9, and the Denoiser contract."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from edmbench.denoisers.base import Denoiser
from edmbench.denoisers.precond import EDMPrecond, VEPrecond, VPPrecond, iDDPMPrecond


def _tiny_configs():
    """``tiny_configs.py`` beside this file, by path (importlib test mode: no package imports)."""
    spec = importlib.util.spec_from_file_location("precond_tiny_configs", Path(__file__).with_name(
        "tiny_configs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CONFIGS = _tiny_configs()
TINY, TINY_ADM = _CONFIGS.SONG_SMALL, _CONFIGS.ADM_SMALL


class AffineBackbone(nn.Module):
    """F(x; c_noise) = 2 x + 1 on every output channel; records what the preconditioner passed in."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels

    def forward(self, x, noise_labels, class_labels=None, **kwargs):
        self.x_in, self.c_noise, self.class_labels, self.kwargs = x, noise_labels, class_labels, kwargs
        return (2 * x + 1).repeat(1, self.out_channels // x.shape[1], 1, 1)


def with_affine_backbone(net):
    # iDDPM's backbone has 2 * img_channels outputs (learned variance, edm-facts Sec. 4)
    net.model = AffineBackbone(2 * net.img_channels if isinstance(net, iDDPMPrecond) else net.img_channels)
    return net


def coeffs(net, sigmas):
    sigma = torch.tensor(sigmas, dtype=torch.float32).reshape(-1, 1, 1, 1)
    return [
        torch.as_tensor(c, dtype=torch.float32).expand_as(sigma).flatten().double()
        for c in net.coefficients(sigma)
    ]


def test_edm_coefficients_pinned() -> None:
    # edm-facts.md Sec. 9.8 (sigma_data 0.5): (c_skip, c_out, c_in, c_noise) at sigma = 1, 0.5, 80, 0.002
    expected = [
        [0.2, 0.5, 3.90609741807e-5, 0.999984000256],
        [0.4472135955, 0.353553390593, 0.499990234661, 0.00199998400019],
        [0.894427191, 1.41421356237, 0.0124997558665, 1.99998400019],
        [0.0, -0.17328679514, 1.09550665867, -1.55365202461],
    ]
    got = coeffs(EDMPrecond(8, 1, **TINY), [1.0, 0.5, 80.0, 0.002])
    for g, e in zip(got, expected, strict=True):
        # float32 arithmetic (edm-facts: "use rtol 1e-6"); c_noise(1) = 0 exactly
        torch.testing.assert_close(g, torch.tensor(e, dtype=torch.float64), rtol=1e-6, atol=1e-7)


def test_vp_coefficients_pinned() -> None:
    net = VPPrecond(8, 1, **TINY)
    c_skip, c_out, c_in, c_noise = coeffs(net, [1.0, 80.0])
    assert c_skip.tolist() == [1.0, 1.0] and c_out.tolist() == [-1.0, -80.0]
    # edm-facts.md Sec. 9.9: c_in(1) = 0.707106781187; c_noise(1) = 258.70130217, c_noise(80) = 932.577632097
    torch.testing.assert_close(c_in[0].item(), 0.707106781187, rtol=1e-6, atol=0)
    torch.testing.assert_close(c_noise.tolist(), [258.70130217, 932.577632097], rtol=2e-6, atol=0)
    # sigma_max = sigma_VP(1) = 152.166970284 (float32); sigma_min = sigma_VP(1e-5) = 0.00100049762665 in
    # float64, but EDM computes it in float32 where it is "a few % off" (Sec. 4), so only its size is checked
    assert net.sigma_max == pytest.approx(152.166970284, rel=1e-6)
    assert net.sigma_min == pytest.approx(0.00100049762665, rel=0.05)


def test_ve_coefficients_pinned() -> None:
    net = VEPrecond(8, 1, **TINY)
    c_skip, c_out, c_in, c_noise = coeffs(net, [2.0, 1.0, 100.0, 0.02])
    # edm-facts.md Sec. 9.10: c_noise = ln(sigma / 2)
    torch.testing.assert_close(
        c_noise.tolist(), [0.0, -0.69314718056, 3.91202300543, -4.60517018599], rtol=1e-6, atol=1e-7
    )
    assert c_out.tolist() == [2.0, 1.0, 100.0, pytest.approx(0.02)] and c_in.tolist() == [1.0] * 4
    assert (net.sigma_min, net.sigma_max) == (0.02, 100.0)  # Sec. 4 table


def test_iddpm_u_table_pinned() -> None:
    # u[0], u[1], u[8], u[998], u[999], u[1000] of EDM's training/networks.py iDDPMPrecond, whose table is
    # built entirely in float32 (EDM's loop run with torch 2.14 on CPU). The all-float64 values of
    # edm-facts.md Sec. 9.11 (20291.16961, 641.662345118, 80.2037018455, 0.00935049283562, 0.00642541277114)
    # differ by ~1e-7 relative at the large end and up to 5e-4 at the small end, which float32 amplifies.
    # Compared at 1e-6 (float32): CPUs differ by an ulp in float32 sin/sqrt kernels (u[0] was 20291.171875 on
    # one machine, 20291.169921875 on another); the small end still tells a float32 table from a float64 one.
    net = iDDPMPrecond(8, 1, **TINY_ADM)
    expected = [20291.171875, 641.662414551, 80.2037124634, 0.00934774894267, 0.00642233714461, 0.0]
    assert net.u.dtype == torch.float32 and net.u.shape == (1001,)
    torch.testing.assert_close(
        net.u[[0, 1, 8, 998, 999, 1000]].double().tolist(), expected, rtol=1e-6, atol=0
    )
    assert net.sigma_min == net.u[999].item() and net.sigma_max == net.u[0].item()


def test_iddpm_round_sigma_on_edm_schedule() -> None:
    # edm-facts.md Sec. 9.11: edm_sampler, N = 18, on an iDDPMPrecond net rounds to these u indices
    net = iDDPMPrecond(8, 1, **TINY_ADM)
    n, rho = 18, 7
    s_min, s_max = max(0.002, net.sigma_min), min(80.0, net.sigma_max)
    i = torch.arange(n, dtype=torch.float64)
    t = (s_max ** (1 / rho) + i / (n - 1) * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    expected = [8, 11, 15, 21, 31, 45, 67, 101, 157, 247, 384, 561, 735, 861, 937, 976, 993, 999]
    assert net.sigma_index(t).tolist() == expected
    rounded = net.round_sigma(t)
    assert rounded.dtype == torch.float64 and torch.equal(rounded, net.u[expected].double())
    _, _, _, c_noise = coeffs(net, t.tolist())
    assert c_noise.tolist() == [999.0 - j for j in expected]


@pytest.mark.parametrize("cls", [VPPrecond, VEPrecond, iDDPMPrecond, EDMPrecond])
def test_forward_is_c_skip_x_plus_c_out_F(cls) -> None:
    """D = c_skip x + c_out F(c_in x; c_noise) with F(y) = 2y + 1 (EDM Eq. 7), float32 out, labels passed."""
    net = with_affine_backbone(cls(8, 2, label_dim=3, **(TINY_ADM if cls is iDDPMPrecond else TINY)))
    x = torch.randn(4, 2, 8, 8, dtype=torch.float64)
    sigma = torch.tensor([0.03, 0.5, 2.0, 50.0], dtype=torch.float64)
    labels = torch.eye(3)[[0, 1, 2, 0]]
    out = net(x, sigma, labels, augment_labels=None)
    c_skip, c_out, c_in, c_noise = coeffs(net, sigma.tolist())
    shape = (-1, 1, 1, 1)
    x32 = x.float().double()
    expected = c_skip.reshape(shape) * x32 + c_out.reshape(shape) * (2 * c_in.reshape(shape) * x32 + 1)
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(net.model.c_noise.double(), c_noise)
    assert torch.equal(net.model.class_labels, labels)


def test_denoiser_contract_sigma_forms_and_labels() -> None:
    torch.manual_seed(0)
    net = EDMPrecond(8, 1, label_dim=10, **TINY).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    assert isinstance(net, Denoiser) and net.image_shape == (1, 8, 8) and net.label_dim == 10
    x = torch.randn(3, 1, 8, 8)
    x_copy = x.clone()
    a = net(x, 0.7)
    b = net(x, torch.tensor(0.7))
    c = net(x, torch.full([3], 0.7))
    assert torch.equal(x, x_copy)  # never modifies x
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=1e-6, atol=1e-6)  # broadcast vs per-row embedding
    # no labels on a conditional net = zero labels (EDM Sec. 4 "Labels")
    torch.testing.assert_close(net(x, 0.7, None), net(x, 0.7, torch.zeros(3, 10)), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(net(x, 0.7, torch.eye(10)[:3]), a)
    assert torch.equal(net(x, 0.7, force_fp32=True), a)
    with pytest.raises(ValueError, match=r"sigma must be a scalar or have shape \[3\]"):
        net(x, torch.ones(2))


def test_round_sigma_identity_and_ranges() -> None:
    net = EDMPrecond(8, 1, **TINY)
    assert (net.sigma_min, net.sigma_max) == (0.0, math.inf)  # Sec. 4 table
    s = torch.tensor([0.1, 3.0], dtype=torch.float64)
    assert torch.equal(net.round_sigma(s), s)
    assert net.round_sigma(0.3).dtype == torch.float64  # Python numbers are not rounded to float32


def test_reduced_precision_is_cuda_only_and_channels_last_matches() -> None:
    torch.manual_seed(1)
    net = VEPrecond(
        8,
        3,
        **dict(
            TINY,
            embedding_type="fourier",
            encoder_type="residual",
            resample_filter=[1, 3, 3, 1],
            channel_mult_noise=2,
        ),
    ).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    with pytest.raises(ValueError, match="trained in fp32"):  # fp16 only where the net was trained with it
        net.set_precision(torch.float16)
    with pytest.raises(ValueError, match="CUDA only"):
        net.set_precision(torch.bfloat16)
    fp16_net = EDMPrecond(8, 1, use_fp16=True, **TINY)
    with pytest.raises(ValueError, match="CUDA only"):
        fp16_net.set_precision(torch.float16)
    assert fp16_net.network_dtype(torch.zeros(1)) == torch.float32  # EDM: fp16 only on CUDA
    with pytest.raises(ValueError, match="unsupported dtype"):
        net.set_precision(torch.float64)
    x = torch.randn(2, 3, 8, 8)
    ref = net(x, 1.3)
    net.set_precision(torch.float32, channels_last=True)
    assert net.model.enc["8x8_conv"].weight.is_contiguous(memory_format=torch.channels_last)
    out = net(x, 1.3)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)  # same maths, different kernel order


def test_unknown_backbone_and_bad_config_are_named() -> None:
    with pytest.raises(ValueError, match="unknown model_type 'UNet'; valid: SongUNet, DhariwalUNet"):
        EDMPrecond(8, 1, model_type="UNet")
    with pytest.raises(ValueError, match="unknown encoder_type 'fancy'"):
        EDMPrecond(8, 1, **dict(TINY, encoder_type="fancy"))
    with pytest.raises(ValueError, match="not divisible"):
        EDMPrecond(12, 1, **dict(TINY, channel_mult=[1, 2, 2, 2]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_on_cuda_keeps_float32_output(dtype) -> None:
    torch.manual_seed(2)
    net = EDMPrecond(8, 3, label_dim=10, use_fp16=True, **TINY).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    net = net.cuda()
    x, labels = torch.randn(4, 3, 8, 8, device="cuda"), torch.eye(10, device="cuda")[:4]
    net.set_precision(torch.float32)
    ref = net(x, 0.8, labels)
    net.set_precision(dtype, channels_last=True)
    out = net(x, 0.8, labels)
    assert out.dtype == torch.float32
    # reduced-precision backbone: agreement to the dtype's resolution (bf16 has 8 mantissa bits)
    torch.testing.assert_close(out, ref, rtol=0, atol=0.05 * ref.abs().max().item())
    torch.testing.assert_close(net(x, 0.8, labels, force_fp32=True), ref, rtol=1e-5, atol=1e-5)
