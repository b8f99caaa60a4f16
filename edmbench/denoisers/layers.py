"""Building blocks of EDM's backbones (Karras et al. 2022, App. F), with EDM's parameter and buffer names.

Every layer casts its weights to the input's dtype, so one fp32 copy of the weights serves fp32, fp16 and
bf16 forward passes (EDM's mixed-precision scheme). Attention logits and softmax are computed in float32.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INIT_MODES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")
_SKIP_INIT: ContextVar[bool] = ContextVar("edmbench_skip_init", default=False)


@contextmanager
def skip_init() -> Iterator[None]:
    """Build modules with uninitialised weights (they are about to be overwritten by a checkpoint)."""
    token = _SKIP_INIT.set(True)
    try:
        yield
    finally:
        _SKIP_INIT.reset(token)


def init_skipped() -> bool:
    """True inside ``skip_init()``: layers allocate weights without drawing random values."""
    return _SKIP_INIT.get()


def weight_init(shape: Sequence[int], mode: str, fan_in: int, fan_out: int) -> Tensor:
    """Random initial weights; the four schemes EDM's backbones use (Glorot / He, uniform / normal)."""
    if mode not in INIT_MODES:
        raise ValueError(f"unknown init_mode {mode!r}; valid: {', '.join(INIT_MODES)}")
    if _SKIP_INIT.get():
        return torch.empty(*shape)
    if mode == "xavier_uniform":
        return math.sqrt(6 / (fan_in + fan_out)) * (torch.rand(*shape) * 2 - 1)
    if mode == "xavier_normal":
        return math.sqrt(2 / (fan_in + fan_out)) * torch.randn(*shape)
    if mode == "kaiming_uniform":
        return math.sqrt(3 / fan_in) * (torch.rand(*shape) * 2 - 1)
    return math.sqrt(1 / fan_in) * torch.randn(*shape)  # kaiming_normal


class Linear(nn.Module):
    """Fully connected layer: ``weight [out, in]``, optional ``bias [out]``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init_mode: str = "kaiming_normal",
        init_weight: float = 1,
        init_bias: float = 0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        fans = dict(mode=init_mode, fan_in=in_features, fan_out=out_features)
        self.weight = nn.Parameter(weight_init([out_features, in_features], **fans) * init_weight)
        self.bias = nn.Parameter(weight_init([out_features], **fans) * init_bias) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        x = x @ self.weight.to(x.dtype).t()
        return x if self.bias is None else x + self.bias.to(x.dtype)


def resample_kernel(taps: Sequence[float]) -> Tensor:
    """Separable FIR filter ``outer(f, f) / sum(f)^2``, shape ``[1, 1, k, k]`` (e.g. outer([1,3,3,1])/64)."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    return (torch.outer(f, f) / f.sum().square())[None, None]


class Conv2d(nn.Module):
    """Convolution with optional 2x FIR up/down-sampling; ``kernel=0`` gives a pure resampling layer.

    With ``fused_resample`` the resampling is merged into the convolution's padding (used by NCSN++'s
    ``aux_residual`` skips); otherwise it runs as a separate depthwise filter before the convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        bias: bool = True,
        up: bool = False,
        down: bool = False,
        resample_filter: Sequence[float] = (1, 1),
        fused_resample: bool = False,
        init_mode: str = "kaiming_normal",
        init_weight: float = 1,
        init_bias: float = 0,
    ) -> None:
        if up and down:
            raise ValueError("Conv2d cannot both up- and down-sample")
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.up, self.down, self.fused_resample = up, down, fused_resample
        fans = dict(
            mode=init_mode, fan_in=in_channels * kernel * kernel, fan_out=out_channels * kernel * kernel
        )
        shape = [out_channels, in_channels, kernel, kernel]
        self.weight = nn.Parameter(weight_init(shape, **fans) * init_weight) if kernel else None
        self.bias = nn.Parameter(weight_init([out_channels], **fans) * init_bias) if kernel and bias else None
        self.register_buffer("resample_filter", resample_kernel(resample_filter) if up or down else None)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype) if self.weight is not None else None
        f = self.resample_filter.to(x.dtype) if self.resample_filter is not None else None
        w_pad = w.shape[-1] // 2 if w is not None else 0
        f_pad = (f.shape[-1] - 1) // 2 if f is not None else 0
        if self.fused_resample and self.up and w is not None:
            x = _upsample(x, f, padding=max(f_pad - w_pad, 0))
            x = F.conv2d(x, w, padding=max(w_pad - f_pad, 0))
        elif self.fused_resample and self.down and w is not None:
            x = F.conv2d(x, w, padding=w_pad + f_pad)
            x = F.conv2d(x, f.tile([self.out_channels, 1, 1, 1]), groups=self.out_channels, stride=2)
        else:
            if self.up:
                x = _upsample(x, f, padding=f_pad)
            if self.down:
                x = F.conv2d(x, f.tile([x.shape[1], 1, 1, 1]), groups=x.shape[1], stride=2, padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        return x


def _upsample(x: Tensor, f: Tensor, padding: int) -> Tensor:
    """2x depthwise transposed FIR filter (gain 4 keeps the mean)."""
    channels = x.shape[1]
    return F.conv_transpose2d(
        x, (f * 4).tile([channels, 1, 1, 1]), groups=channels, stride=2, padding=padding
    )


class GroupNorm(nn.Module):
    """Group normalisation with at most ``num_groups`` groups of at least ``min_channels_per_group``."""

    def __init__(
        self, num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        if self.num_groups < 1 or num_channels % self.num_groups:
            raise ValueError(
                f"GroupNorm: {num_channels} channels cannot form groups of "
                f">= {min_channels_per_group} channels; use a multiple of {min_channels_per_group}"
            )
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


class PositionalEmbedding(nn.Module):
    """Transformer sinusoidal embedding of the noise label: ``[cos(x w_i), sin(x w_i)]``, w_i = P^(-i/n)."""

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.max_positions = max_positions
        self.endpoint = endpoint

    def forward(self, x: Tensor) -> Tensor:
        half = self.num_channels // 2
        freqs = torch.arange(half, dtype=torch.float32, device=x.device) / (
            half - (1 if self.endpoint else 0)
        )
        freqs = (1 / self.max_positions) ** freqs
        x = torch.outer(x, freqs.to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of the noise label (NCSN++): buffer ``freqs`` ~ scale * N(0, 1)."""

    def __init__(self, num_channels: int, scale: float = 16) -> None:
        super().__init__()
        freqs = torch.empty(num_channels // 2) if _SKIP_INIT.get() else torch.randn(num_channels // 2)
        self.register_buffer("freqs", freqs * scale)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.outer(x, (2 * math.pi * self.freqs).to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


def attention_weights(q: Tensor, k: Tensor) -> Tensor:
    """softmax(q^T k / sqrt(c)) over keys, computed in float32 and returned in q's dtype."""
    logits = torch.einsum("ncq,nck->nqk", q.float(), (k / math.sqrt(k.shape[1])).float())
    return logits.softmax(dim=2).to(q.dtype)


class UNetBlock(nn.Module):
    """Residual block with optional 2x resampling and self-attention (EDM App. F.2, Fig. 5 / F.3).

    ``x -> conv0(silu(norm0 x)) -> (+/x) affine(emb) -> conv1(dropout(silu(norm1 .))) + skip(x)``, scaled
    by ``skip_scale``; then, with attention, ``x + proj(attn(qkv(norm2 x)))`` scaled again.
    ``adaptive_scale`` uses the embedding as scale and shift (ADM) instead of an additive bias (DDPM++).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        up: bool = False,
        down: bool = False,
        attention: bool = False,
        num_heads: int | None = None,
        channels_per_head: int = 64,
        dropout: float = 0,
        skip_scale: float = 1,
        eps: float = 1e-5,
        resample_filter: Sequence[float] = (1, 1),
        resample_proj: bool = False,
        adaptive_scale: bool = True,
        init: dict | None = None,
        init_zero: dict | None = None,
        init_attn: dict | None = None,
    ) -> None:
        super().__init__()
        init = init or {}
        init_zero = init_zero if init_zero is not None else dict(init_weight=0)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_heads = (
            0 if not attention else num_heads if num_heads is not None else out_channels // channels_per_head
        )
        self.dropout = dropout
        self.skip_scale = skip_scale
        self.adaptive_scale = adaptive_scale
        resample = dict(up=up, down=down, resample_filter=resample_filter)
        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, kernel=3, **resample, **init)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1), **init)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, kernel=3, **init_zero)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel=kernel, **resample, **init)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(
                out_channels, out_channels * 3, kernel=1, **(init_attn if init_attn is not None else init)
            )
            self.proj = Conv2d(out_channels, out_channels, kernel=1, **init_zero)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb).unsqueeze(2).unsqueeze(3).to(x.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(chunks=2, dim=1)
            x = F.silu(torch.addcmul(shift, self.norm1(x), scale + 1))
        else:
            x = F.silu(self.norm1(x + params))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = (x + (self.skip(orig) if self.skip is not None else orig)) * self.skip_scale
        if self.num_heads:
            x = (self.proj(self._attend(self.qkv(self.norm2(x)), x.shape)) + x) * self.skip_scale
        return x

    def _attend(self, qkv: Tensor, shape: torch.Size) -> Tensor:
        """Multi-head self-attention over the pixels of ``qkv`` (channels split as [head, c, (q,k,v)])."""
        n, c = shape[0], shape[1]
        q, k, v = qkv.reshape(n * self.num_heads, c // self.num_heads, 3, -1).unbind(2)
        a = torch.einsum("nqk,nck->ncq", attention_weights(q, k), v)
        return a.reshape(*shape)
