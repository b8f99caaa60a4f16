"""EDM2's magnitude-preserving U-Net and preconditioner (Karras et al. 2024, "Analyzing and Improving the
Training Dynamics of Diffusion Models"), with EDM2's constructor arguments and state-dict keys.

Pixel-space models (``img64``) load directly; latent ``img512`` networks load too, but their VAE decoder is
not part of edmbench. Layers follow the paper's Sec. 3 / App. B: forced weight normalisation (MPConv),
magnitude-preserving SiLU (silu / 0.596), sums and concatenations, Fourier noise features, and a constant
ones channel appended to the input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edmbench.denoisers.layers import init_skipped, resample_kernel
from edmbench.denoisers.precond_base import Precond


def normalize(x: Tensor, dim: int | list[int] | None = None, eps: float = 1e-4) -> Tensor:
    """x / (eps + ||x|| / sqrt(n)): unit root-mean-square along ``dim`` (default: all but the first)."""
    dim = list(range(1, x.ndim)) if dim is None else dim
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32)
    norm = torch.add(eps, norm, alpha=math.sqrt(norm.numel() / x.numel()))
    return x / norm.to(x.dtype)


def mp_silu(x: Tensor) -> Tensor:
    return F.silu(x) / 0.596


def mp_sum(a: Tensor, b: Tensor, t: float = 0.5) -> Tensor:
    """Magnitude-preserving blend (1-t) a + t b, rescaled to unit variance for unit-variance inputs."""
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t**2)


def mp_cat(a: Tensor, b: Tensor, t: float = 0.5) -> Tensor:
    """Magnitude-preserving channel concatenation with balance ``t`` between ``a`` and ``b``."""
    na, nb = a.shape[1], b.shape[1]
    scale = math.sqrt((na + nb) / ((1 - t) ** 2 + t**2))
    return torch.cat([scale / math.sqrt(na) * (1 - t) * a, scale / math.sqrt(nb) * t * b], dim=1)


def resample(x: Tensor, taps: Sequence[float], mode: str) -> Tensor:
    """2x FIR down/up-sampling (``mode`` keep | down | up), depthwise."""
    if mode == "keep":
        return x
    f = resample_kernel(taps).to(device=x.device, dtype=x.dtype)
    c, pad = x.shape[1], (len(taps) - 1) // 2
    if mode == "down":
        return F.conv2d(x, f.tile([c, 1, 1, 1]), groups=c, stride=2, padding=pad)
    return F.conv_transpose2d(x, (f * 4).tile([c, 1, 1, 1]), groups=c, stride=2, padding=pad)


class MPFourier(nn.Module):
    """Fourier features sqrt(2) cos(2 pi (f x + p)) with buffers ``freqs`` and ``phases``."""

    def __init__(self, num_channels: int, bandwidth: float = 1) -> None:
        super().__init__()
        freqs = torch.empty(num_channels) if init_skipped() else torch.randn(num_channels)
        phases = torch.empty(num_channels) if init_skipped() else torch.rand(num_channels)
        self.register_buffer("freqs", 2 * math.pi * freqs * bandwidth)
        self.register_buffer("phases", 2 * math.pi * phases)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.outer(x.to(torch.float32), self.freqs.to(torch.float32)) + self.phases.to(torch.float32)
        return (y.cos() * math.sqrt(2)).to(x.dtype)


class MPConv(nn.Module):
    """Weight-normalised convolution (``kernel=[k, k]``) or linear layer (``kernel=[]``), no bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int]) -> None:
        super().__init__()
        self.out_channels = out_channels
        shape = [out_channels, in_channels, *kernel]
        self.weight = nn.Parameter(torch.empty(shape) if init_skipped() else torch.randn(shape))

    def forward(self, x: Tensor, gain: float | Tensor = 1) -> Tensor:
        w = normalize(self.weight.to(torch.float32))  # inference only: no in-place forced normalisation
        w = (w * (gain / math.sqrt(w[0].numel()))).to(x.dtype)
        if w.ndim == 2:
            return x @ w.t()
        return F.conv2d(x, w, padding=w.shape[-1] // 2)


class Block(nn.Module):
    """EDM2 residual block; ``flavor`` enc (skip before the residual) or dec (skip after)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        flavor: str = "enc",
        resample_mode: str = "keep",
        resample_filter: Sequence[int] = (1, 1),
        attention: bool = False,
        channels_per_head: int = 64,
        dropout: float = 0,
        res_balance: float = 0.3,
        attn_balance: float = 0.3,
        clip_act: float | None = 256,
    ) -> None:
        super().__init__()
        self.out_channels, self.flavor = out_channels, flavor
        self.resample_filter, self.resample_mode = list(resample_filter), resample_mode
        self.num_heads = out_channels // channels_per_head if attention else 0
        self.dropout, self.res_balance, self.attn_balance, self.clip_act = (
            dropout,
            res_balance,
            attn_balance,
            clip_act,
        )
        self.emb_gain = nn.Parameter(torch.zeros([]))
        self.conv_res0 = MPConv(out_channels if flavor == "enc" else in_channels, out_channels, [3, 3])
        self.emb_linear = MPConv(emb_channels, out_channels, [])
        self.conv_res1 = MPConv(out_channels, out_channels, [3, 3])
        self.conv_skip = MPConv(in_channels, out_channels, [1, 1]) if in_channels != out_channels else None
        self.attn_qkv = MPConv(out_channels, out_channels * 3, [1, 1]) if self.num_heads else None
        self.attn_proj = MPConv(out_channels, out_channels, [1, 1]) if self.num_heads else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        x = resample(x, self.resample_filter, self.resample_mode)
        if self.flavor == "enc":
            if self.conv_skip is not None:
                x = self.conv_skip(x)
            x = normalize(x, dim=1)  # pixel norm
        y = self.conv_res0(mp_silu(x))
        c = self.emb_linear(emb, gain=self.emb_gain) + 1
        y = mp_silu(y * c.unsqueeze(2).unsqueeze(3).to(y.dtype))
        y = self.conv_res1(F.dropout(y, p=self.dropout, training=self.training))
        if self.flavor == "dec" and self.conv_skip is not None:
            x = self.conv_skip(x)
        x = mp_sum(x, y, t=self.res_balance)
        if self.num_heads:
            x = mp_sum(x, self.attn_proj(self._attend(x)), t=self.attn_balance)
        return x if self.clip_act is None else x.clip(-self.clip_act, self.clip_act)

    def _attend(self, x: Tensor) -> Tensor:
        y = self.attn_qkv(x)
        y = y.reshape(y.shape[0], self.num_heads, -1, 3, y.shape[2] * y.shape[3])
        q, k, v = normalize(y, dim=2).unbind(3)  # pixel norm, split
        w = torch.einsum("nhcq,nhck->nhqk", q, k / math.sqrt(q.shape[2])).softmax(dim=3)
        return torch.einsum("nhqk,nhck->nhcq", w, v).reshape(*x.shape)


class UNet(nn.Module):
    """EDM2 U-Net F(x; c_noise, class_labels) (config G of the EDM2 paper)."""

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        label_dim: int,
        model_channels: int = 192,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        channel_mult_noise: int | None = None,
        channel_mult_emb: int | None = None,
        num_blocks: int = 3,
        attn_resolutions: Sequence[int] = (16, 8),
        label_balance: float = 0.5,
        concat_balance: float = 0.5,
        **block_kwargs: Any,
    ) -> None:
        super().__init__()
        cblock = [model_channels * m for m in channel_mult]
        cnoise = model_channels * channel_mult_noise if channel_mult_noise is not None else cblock[0]
        cemb = model_channels * channel_mult_emb if channel_mult_emb is not None else max(cblock)
        self.label_balance, self.concat_balance = label_balance, concat_balance
        self.out_gain = nn.Parameter(torch.zeros([]))
        self.emb_fourier = MPFourier(cnoise)
        self.emb_noise = MPConv(cnoise, cemb, [])
        self.emb_label = MPConv(label_dim, cemb, []) if label_dim else None
        levels = dict(
            img_resolution=img_resolution,
            widths=cblock,
            num_blocks=num_blocks,
            attn=set(attn_resolutions),
            emb_channels=cemb,
            block_kwargs=block_kwargs,
        )
        self.enc = self._build_encoder(img_channels + 1, **levels)  # + the constant ones channel
        skips = [block.out_channels for block in self.enc.values()]
        self.dec = self._build_decoder(skips, **levels)
        self.out_conv = MPConv(cblock[0], img_channels, [3, 3])

    @staticmethod
    def _build_encoder(
        in_channels: int,
        *,
        img_resolution: int,
        widths: list[int],
        num_blocks: int,
        attn: set[int],
        emb_channels: int,
        block_kwargs: dict,
    ) -> nn.ModuleDict:
        enc = nn.ModuleDict()
        cout = in_channels
        for level, width in enumerate(widths):
            res = img_resolution >> level
            if level == 0:
                enc[f"{res}x{res}_conv"] = MPConv(cout, width, [3, 3])
                cout = width
            else:
                enc[f"{res}x{res}_down"] = Block(cout, cout, emb_channels, "enc", "down", **block_kwargs)
            for idx in range(num_blocks):
                enc[f"{res}x{res}_block{idx}"] = Block(
                    cout, width, emb_channels, "enc", attention=res in attn, **block_kwargs
                )
                cout = width
        return enc

    @staticmethod
    def _build_decoder(
        skips: list[int],
        *,
        img_resolution: int,
        widths: list[int],
        num_blocks: int,
        attn: set[int],
        emb_channels: int,
        block_kwargs: dict,
    ) -> nn.ModuleDict:
        dec = nn.ModuleDict()
        cout = skips[-1]
        for level, width in reversed(list(enumerate(widths))):
            res = img_resolution >> level
            if level == len(widths) - 1:
                dec[f"{res}x{res}_in0"] = Block(
                    cout, cout, emb_channels, "dec", attention=True, **block_kwargs
                )
                dec[f"{res}x{res}_in1"] = Block(cout, cout, emb_channels, "dec", **block_kwargs)
            else:
                dec[f"{res}x{res}_up"] = Block(cout, cout, emb_channels, "dec", "up", **block_kwargs)
            for idx in range(num_blocks + 1):
                cin = cout + skips.pop()
                dec[f"{res}x{res}_block{idx}"] = Block(
                    cin, width, emb_channels, "dec", attention=res in attn, **block_kwargs
                )
                cout = width
        return dec

    def forward(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None = None) -> Tensor:
        emb = self.emb_noise(self.emb_fourier(noise_labels))
        if self.emb_label is not None:
            labels = self.emb_label(class_labels * math.sqrt(class_labels.shape[1]))
            emb = mp_sum(emb, labels, t=self.label_balance)
        emb = mp_silu(emb)
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        skips = []
        for name, block in self.enc.items():
            x = block(x) if "conv" in name else block(x, emb)
            skips.append(x)
        for name, block in self.dec.items():
            if "block" in name:
                x = mp_cat(x, skips.pop(), t=self.concat_balance)
            x = block(x, emb)
        return self.out_conv(x, gain=self.out_gain)


class EDM2Precond(Precond):
    """EDM2 ``Precond``: EDM's c_skip / c_out / c_in / c_noise around the EDM2 U-Net (key prefix ``unet.``),
    plus the training-time log-variance head (``logvar_fourier``, ``logvar_linear``)."""

    backbone_name = "unet"
    edm_class_name = "Precond"
    # EDM2's generate_images.py draws churn noise only on steps inside [S_min, S_max] (edm-facts.md §8.1)
    sampler_defaults = MappingProxyType({"churn_noise": "in_window"})

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        label_dim: int,
        use_fp16: bool = True,
        sigma_data: float = 0.5,
        logvar_channels: int = 128,
        **unet_kwargs: Any,
    ) -> None:
        init_kwargs = dict(
            img_resolution=img_resolution,
            img_channels=img_channels,
            label_dim=label_dim,
            use_fp16=use_fp16,
            sigma_data=sigma_data,
            logvar_channels=logvar_channels,
        )
        super().__init__(
            init_kwargs, img_resolution, img_channels, label_dim, use_fp16, model_kwargs=unet_kwargs
        )
        self.sigma_data = float(sigma_data)
        self.sigma_min, self.sigma_max = 0.0, math.inf  # EDM2 nets have no range; EDM's defaults
        self.unet = UNet(
            img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim, **unet_kwargs
        )
        self.logvar_fourier = MPFourier(logvar_channels)
        self.logvar_linear = MPConv(logvar_channels, 1, [])

    def coefficients(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        return c_skip, c_out, 1 / (sd**2 + sigma**2).sqrt(), sigma.log() / 4
