"""DhariwalUNet: the ADM backbone of Dhariwal & Nichol 2021 as configured by EDM (edm-facts.md Sec. 6.2).

Constructor arguments and state-dict keys match EDM's ``DhariwalUNet``: adaptive scale/shift blocks,
64 channels per attention head, positional embedding without endpoint, bias-free label embedding, and an
``out_norm`` / ``out_conv`` head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edmbench.denoisers.layers import Conv2d, GroupNorm, Linear, PositionalEmbedding, UNetBlock


class DhariwalUNet(nn.Module):
    """U-Net F(x; c_noise, class_labels) of ADM (EDM App. F.2, "ADM" column)."""

    def __init__(
        self,
        img_resolution: int,
        in_channels: int,
        out_channels: int,
        label_dim: int = 0,
        augment_dim: int = 0,
        model_channels: int = 192,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        channel_mult_emb: int = 4,
        num_blocks: int = 3,
        attn_resolutions: Sequence[int] = (32, 16, 8),
        dropout: float = 0.10,
        label_dropout: float = 0,
    ) -> None:
        if img_resolution % (1 << (len(channel_mult) - 1)):
            raise ValueError(
                f"DhariwalUNet: img_resolution {img_resolution} is not divisible by "
                f"2^{len(channel_mult) - 1} (len(channel_mult) - 1 downsamplings)"
            )
        super().__init__()
        self.label_dropout = label_dropout
        emb_channels = model_channels * channel_mult_emb
        init = dict(init_mode="kaiming_uniform", init_weight=math.sqrt(1 / 3), init_bias=math.sqrt(1 / 3))
        init_zero = dict(init_mode="kaiming_uniform", init_weight=0, init_bias=0)
        block_kwargs = dict(
            emb_channels=emb_channels, channels_per_head=64, dropout=dropout, init=init, init_zero=init_zero
        )

        self.map_noise = PositionalEmbedding(model_channels)
        self.map_augment = (
            Linear(augment_dim, model_channels, bias=False, **init_zero) if augment_dim else None
        )
        self.map_layer0 = Linear(model_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)
        self.map_label = None
        if label_dim:
            self.map_label = Linear(
                label_dim,
                emb_channels,
                bias=False,
                init_mode="kaiming_normal",
                init_weight=math.sqrt(label_dim),
            )

        widths = [model_channels * mult for mult in channel_mult]
        attn = set(attn_resolutions)
        self.enc = self._build_encoder(
            img_resolution, in_channels, widths, num_blocks, attn, init, block_kwargs
        )
        skips = [block.out_channels for block in self.enc.values()]
        self.dec = self._build_decoder(img_resolution, widths, skips, num_blocks, attn, block_kwargs)
        self.out_norm = GroupNorm(widths[0])
        self.out_conv = Conv2d(widths[0], out_channels, kernel=3, **init_zero)

    @staticmethod
    def _build_encoder(
        img_resolution: int,
        in_channels: int,
        widths: list[int],
        num_blocks: int,
        attn: set[int],
        init: dict,
        block_kwargs: dict,
    ) -> nn.ModuleDict:
        """Per level: input conv (level 0) or a downsampling block, then ``num_blocks`` blocks."""
        enc = nn.ModuleDict()
        cout = in_channels
        for level, width in enumerate(widths):
            res = img_resolution >> level
            if level == 0:
                enc[f"{res}x{res}_conv"] = Conv2d(cout, width, kernel=3, **init)
                cout = width
            else:
                enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block_kwargs)
            for idx in range(num_blocks):
                enc[f"{res}x{res}_block{idx}"] = UNetBlock(cout, width, attention=res in attn, **block_kwargs)
                cout = width
        return enc

    @staticmethod
    def _build_decoder(
        img_resolution: int,
        widths: list[int],
        skips: list[int],
        num_blocks: int,
        attn: set[int],
        block_kwargs: dict,
    ) -> nn.ModuleDict:
        """Per level, coarsest first: two bottleneck blocks or an upsampling block, then ``num_blocks + 1``
        blocks that each take one encoder skip."""
        dec = nn.ModuleDict()
        cout = skips[-1]
        for level, width in reversed(list(enumerate(widths))):
            res = img_resolution >> level
            if level == len(widths) - 1:
                dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block_kwargs)
                dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block_kwargs)
            else:
                dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block_kwargs)
            for idx in range(num_blocks + 1):
                cin = cout + skips.pop()
                dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, width, attention=res in attn, **block_kwargs)
                cout = width
        return dec

    def embed(
        self, noise_labels: Tensor, class_labels: Tensor | None, augment_labels: Tensor | None
    ) -> Tensor:
        """Mapping network: noise (+ augment) embedding -> layer0 -> SiLU -> layer1 (+ label) -> SiLU."""
        emb = self.map_noise(noise_labels)
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = self.map_layer1(F.silu(self.map_layer0(emb)))
        if self.map_label is not None:
            labels = class_labels
            if self.training and self.label_dropout:
                keep = torch.rand([labels.shape[0], 1], device=labels.device) >= self.label_dropout
                labels = labels * keep.to(labels.dtype)
            emb = emb + self.map_label(labels)
        return F.silu(emb)

    def forward(
        self,
        x: Tensor,
        noise_labels: Tensor,
        class_labels: Tensor | None = None,
        augment_labels: Tensor | None = None,
    ) -> Tensor:
        emb = self.embed(noise_labels, class_labels, augment_labels)
        skips = []
        for block in self.enc.values():
            x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
            skips.append(x)
        for block in self.dec.values():
            if x.shape[1] != block.in_channels:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))
