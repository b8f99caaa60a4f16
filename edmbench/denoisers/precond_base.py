"""The machinery every preconditioner shares (EDM Eq. 7): D(x; sigma) = c_skip x + c_out F(c_in x; c_noise).

Subclasses (``edmbench.denoisers.precond``, ``edmbench.denoisers.edm2``) supply the coefficients; this base
handles input and label shapes, the precision rules (EDM: fp16 only if ``use_fp16`` and on CUDA; output
always float32), channels_last, the identity ``round_sigma`` and the config recorded in checkpoints.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from edmbench.denoisers.dhariwal import DhariwalUNet
from edmbench.denoisers.songunet import SongUNet

BACKBONES: dict[str, type[nn.Module]] = {"SongUNet": SongUNet, "DhariwalUNet": DhariwalUNet}
REDUCED_PRECISION = (torch.float16, torch.bfloat16)


def as_sigma(sigma: Tensor | float) -> Tensor:
    """``sigma`` as a tensor: tensors unchanged, Python numbers as float64 (no silent rounding to float32)."""
    return sigma if isinstance(sigma, Tensor) else torch.as_tensor(sigma, dtype=torch.float64)


def build_backbone(model_type: str, **kwargs: Any) -> nn.Module:
    """Instantiate a backbone by EDM's class name."""
    if model_type not in BACKBONES:
        raise ValueError(f"unknown model_type {model_type!r}; valid: {', '.join(BACKBONES)}")
    return BACKBONES[model_type](**kwargs)


class Precond(nn.Module):
    """Shared machinery: input/label handling, precision choice, ``round_sigma`` (identity) and config.

    The backbone lives under ``backbone_name`` (EDM: ``model``; EDM2: ``unet``), the prefix of its keys.
    """

    backbone_name = "model"
    edm_class_name: str | None = None  # class name recorded in checkpoints; None: the Python class name
    # Sampler knobs this family's own sampler uses, for knobs a run leaves unset (a fact of the model's
    # release, applied by edmbench.sampling.with_denoiser_defaults; EDM2: its churn noise stream).
    sampler_defaults: MappingProxyType[str, Any] = MappingProxyType({})

    def __init__(
        self,
        init_kwargs: dict[str, Any],
        img_resolution: int,
        img_channels: int,
        label_dim: int,
        use_fp16: bool,
        model_type: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        out_channels: int | None = None,
    ):
        super().__init__()
        model_kwargs = model_kwargs or {}
        self.init_kwargs = {**init_kwargs, **model_kwargs}
        self.img_resolution = int(img_resolution)
        self.img_channels = int(img_channels)
        self.label_dim = int(label_dim)
        self.use_fp16 = bool(use_fp16)
        self.compute_dtype: torch.dtype | None = None  # None: EDM's rule (fp16 iff use_fp16 and CUDA)
        self.channels_last = False
        if model_type is not None:
            self.model = build_backbone(
                model_type,
                img_resolution=img_resolution,
                in_channels=img_channels,
                out_channels=out_channels or img_channels,
                label_dim=label_dim,
                **model_kwargs,
            )

    @property
    def backbone(self) -> nn.Module:
        return getattr(self, self.backbone_name)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.img_channels, self.img_resolution, self.img_resolution)

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this network: EDM class name and constructor keywords."""
        return {
            "class_name": self.edm_class_name or type(self).__name__,
            "init_kwargs": dict(self.init_kwargs),
        }

    def round_sigma(self, sigma: Tensor | float) -> Tensor:
        """Identity (EDM Table 1); Python numbers become float64 tensors."""
        return as_sigma(sigma)

    def coefficients(self, sigma: Tensor) -> tuple[Tensor | float, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, c_noise) at ``sigma`` of shape [B, 1, 1, 1] (EDM Table 1)."""
        raise NotImplementedError

    def set_precision(self, dtype: torch.dtype = torch.float32, channels_last: bool = False) -> None:
        """Run the backbone in ``dtype`` and/or channels_last; the output stays float32.

        float16 only for networks trained with it (``use_fp16``), bfloat16 for any; both on CUDA only.
        """
        if dtype not in (torch.float32, *REDUCED_PRECISION):
            raise ValueError(
                f"unsupported dtype {dtype}; valid: torch.float32, torch.float16, torch.bfloat16"
            )
        if dtype == torch.float16 and not self.use_fp16:
            raise ValueError(
                f"this {type(self).__name__} was trained in fp32 (use_fp16=False): float16 is only offered "
                f"for networks trained with it (e.g. edm-imagenet-64x64-cond-adm); use torch.bfloat16"
            )
        device = next(self.parameters()).device
        if dtype in REDUCED_PRECISION and device.type != "cuda":
            raise ValueError(f"{dtype} runs on CUDA only (the network is on {device}); use torch.float32")
        self.compute_dtype = dtype
        self.channels_last = channels_last
        self.backbone.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    def network_dtype(self, x: Tensor, force_fp32: bool = False) -> torch.dtype:
        if force_fp32:
            return torch.float32
        if self.compute_dtype is not None:
            return self.compute_dtype
        return torch.float16 if self.use_fp16 and x.device.type == "cuda" else torch.float32

    def forward(
        self,
        x: Tensor,
        sigma: Tensor | float,
        class_labels: Tensor | None = None,
        force_fp32: bool = False,
        **model_kwargs: Any,
    ) -> Tensor:
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1, 1, 1)
        if sigma.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"sigma must be a scalar or have shape [{x.shape[0]}], got {sigma.shape[0]} values"
            )
        labels = self._labels(class_labels, x)
        dtype = self.network_dtype(x, force_fp32)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        x_in = (c_in * x).to(dtype)
        if self.channels_last:
            x_in = x_in.contiguous(memory_format=torch.channels_last)
        F_x = self.backbone(x_in, c_noise.flatten(), class_labels=labels, **model_kwargs)
        if F_x.dtype != dtype:
            raise RuntimeError(f"backbone returned {F_x.dtype}, expected {dtype}")
        return c_skip * x + c_out * F_x[:, : self.img_channels].to(torch.float32)

    def _labels(self, class_labels: Tensor | None, x: Tensor) -> Tensor | None:
        if self.label_dim == 0:
            return None
        if class_labels is None:
            return torch.zeros([1, self.label_dim], device=x.device)
        return class_labels.to(torch.float32).reshape(-1, self.label_dim)
