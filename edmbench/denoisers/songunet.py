"""SongUNet: the DDPM++ ("vp") and NCSN++ ("ve") backbones of Song et al. 2021 as configured by EDM.

Constructor arguments and state-dict keys match EDM's ``SongUNet`` (edm-facts.md Sec. 6.1), so released
checkpoints load strictly. DDPM++: positional embedding, standard encoder, [1,1] filter. NCSN++: Fourier
embedding, residual encoder, ``channel_mult_noise=2``, [1,3,3,1] filter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edmbench.denoisers.layers import (
    Conv2d,
    FourierEmbedding,
    GroupNorm,
    Linear,
    PositionalEmbedding,
    UNetBlock,
)

EMBEDDING_TYPES = ("positional", "fourier")
ENCODER_TYPES = ("standard", "skip", "residual")
DECODER_TYPES = ("standard", "skip")


def _check_choice(name: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ValueError(f"SongUNet: unknown {name} {value!r}; valid: {', '.join(valid)}")


class SongUNet(nn.Module):
    """U-Net F(x; c_noise, class_labels) of DDPM++ / NCSN++ (EDM App. F.2)."""

    def __init__(
        self,
        img_resolution: int,
        in_channels: int,
        out_channels: int,
        label_dim: int = 0,
        augment_dim: int = 0,
        model_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        channel_mult_emb: int = 4,
        num_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.10,
        label_dropout: float = 0,
        embedding_type: str = "positional",
        channel_mult_noise: int = 1,
        encoder_type: str = "standard",
        decoder_type: str = "standard",
        resample_filter: Sequence[int] = (1, 1),
    ) -> None:
        _check_choice("embedding_type", embedding_type, EMBEDDING_TYPES)
        _check_choice("encoder_type", encoder_type, ENCODER_TYPES)
        _check_choice("decoder_type", decoder_type, DECODER_TYPES)
        if img_resolution % (1 << (len(channel_mult) - 1)):
            raise ValueError(
                f"SongUNet: img_resolution {img_resolution} is not divisible by "
                f"2^{len(channel_mult) - 1} (len(channel_mult) - 1 downsamplings)"
            )
        super().__init__()
        self.label_dropout = label_dropout
        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels * channel_mult_noise
        init = dict(init_mode="xavier_uniform")
        init_zero = dict(init_mode="xavier_uniform", init_weight=1e-5)
        self.block_kwargs = dict(
            emb_channels=emb_channels,
            num_heads=1,
            dropout=dropout,
            skip_scale=math.sqrt(0.5),
            eps=1e-6,
            resample_filter=list(resample_filter),
            resample_proj=True,
            adaptive_scale=False,
            init=init,
            init_zero=init_zero,
            init_attn=dict(init_mode="xavier_uniform", init_weight=math.sqrt(0.2)),
        )

        if embedding_type == "positional":
            self.map_noise = PositionalEmbedding(noise_channels, endpoint=True)
        else:
            self.map_noise = FourierEmbedding(noise_channels)
        self.map_label = Linear(label_dim, noise_channels, **init) if label_dim else None
        self.map_augment = Linear(augment_dim, noise_channels, bias=False, **init) if augment_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)

        levels = dict(
            img_resolution=img_resolution,
            in_channels=in_channels,
            model_channels=model_channels,
            channel_mult=list(channel_mult),
            num_blocks=num_blocks,
            attn_resolutions=set(attn_resolutions),
            resample_filter=list(resample_filter),
        )
        self.enc = self._build_encoder(encoder_type, init, **levels)
        skips = [block.out_channels for name, block in self.enc.items() if "aux" not in name]
        self.dec = self._build_decoder(decoder_type, out_channels, skips, init_zero, **levels)

    def _build_encoder(
        self,
        encoder_type: str,
        init: dict,
        *,
        img_resolution: int,
        in_channels: int,
        model_channels: int,
        channel_mult: list[int],
        num_blocks: int,
        attn_resolutions: set[int],
        resample_filter: list[int],
    ) -> nn.ModuleDict:
        enc = nn.ModuleDict()
        cout = caux = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels
                enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, kernel=3, **init)
            else:
                enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **self.block_kwargs)
                if encoder_type == "skip":
                    enc[f"{res}x{res}_aux_down"] = Conv2d(
                        caux, caux, kernel=0, down=True, resample_filter=resample_filter
                    )
                    enc[f"{res}x{res}_aux_skip"] = Conv2d(caux, cout, kernel=1, **init)
                if encoder_type == "residual":
                    enc[f"{res}x{res}_aux_residual"] = Conv2d(
                        caux,
                        cout,
                        kernel=3,
                        down=True,
                        fused_resample=True,
                        resample_filter=resample_filter,
                        **init,
                    )
                    caux = cout
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                enc[f"{res}x{res}_block{idx}"] = UNetBlock(
                    cin, cout, attention=res in attn_resolutions, **self.block_kwargs
                )
        return enc

    def _build_decoder(
        self,
        decoder_type: str,
        out_channels: int,
        skips: list[int],
        init_zero: dict,
        *,
        img_resolution: int,
        in_channels: int,
        model_channels: int,
        channel_mult: list[int],
        num_blocks: int,
        attn_resolutions: set[int],
        resample_filter: list[int],
    ) -> nn.ModuleDict:
        dec = nn.ModuleDict()
        cout = skips[-1]
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **self.block_kwargs)
                dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **self.block_kwargs)
            else:
                dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **self.block_kwargs)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                attention = idx == num_blocks and res in attn_resolutions
                dec[f"{res}x{res}_block{idx}"] = UNetBlock(
                    cin, cout, attention=attention, **self.block_kwargs
                )
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    dec[f"{res}x{res}_aux_up"] = Conv2d(
                        out_channels, out_channels, kernel=0, up=True, resample_filter=resample_filter
                    )
                dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                dec[f"{res}x{res}_aux_conv"] = Conv2d(cout, out_channels, kernel=3, **init_zero)
        return dec

    def embed(
        self, noise_labels: Tensor, class_labels: Tensor | None, augment_labels: Tensor | None
    ) -> Tensor:
        """Mapping network: noise (+ label + augment) embedding -> layer0 -> SiLU -> layer1 -> SiLU."""
        emb = self.map_noise(noise_labels)
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(*emb.shape)  # [cos, sin] -> [sin, cos]
        if self.map_label is not None:
            labels = class_labels
            if self.training and self.label_dropout:
                keep = torch.rand([labels.shape[0], 1], device=labels.device) >= self.label_dropout
                labels = labels * keep.to(labels.dtype)
            emb = emb + self.map_label(labels * math.sqrt(self.map_label.in_features))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = F.silu(self.map_layer0(emb))
        return F.silu(self.map_layer1(emb))

    def forward(
        self,
        x: Tensor,
        noise_labels: Tensor,
        class_labels: Tensor | None = None,
        augment_labels: Tensor | None = None,
    ) -> Tensor:
        emb = self.embed(noise_labels, class_labels, augment_labels)
        skips, aux = [], x
        for name, block in self.enc.items():
            if "aux_down" in name:
                aux = block(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + block(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + block(aux)) / math.sqrt(2)
            else:
                x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
                skips.append(x)
        return self._decode(x, emb, skips)

    def _decode(self, x: Tensor, emb: Tensor, skips: list[Tensor]) -> Tensor:
        aux = tmp = None
        for name, block in self.dec.items():
            if "aux_up" in name:
                aux = block(aux)
            elif "aux_norm" in name:
                tmp = block(x)
            elif "aux_conv" in name:
                tmp = block(F.silu(tmp))
                aux = tmp if aux is None else tmp + aux
            else:
                if x.shape[1] != block.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = block(x, emb)
        return aux
