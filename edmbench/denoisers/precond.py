"""EDM's four preconditioners: D(x; sigma) = c_skip x + c_out F(c_in x; c_noise) (EDM Eq. 7, Table 1).

``VPPrecond``, ``VEPrecond``, ``iDDPMPrecond`` and ``EDMPrecond`` take EDM's constructor arguments and hold
the backbone as ``model`` (state-dict prefix ``model.``). They satisfy ``edmbench.denoisers.base.Denoiser``;
``forward`` also keeps EDM's ``force_fp32`` and extra backbone keywords (e.g. ``augment_labels``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from edmbench.denoisers.dhariwal import DhariwalUNet
from edmbench.denoisers.songunet import SongUNet
from edmbench.sampling.schedules import iddpm_table

BACKBONES: dict[str, type[nn.Module]] = {"SongUNet": SongUNet, "DhariwalUNet": DhariwalUNet}
REDUCED_PRECISION = (torch.float16, torch.bfloat16)


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
        return torch.as_tensor(sigma)

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


def vp_sigma(t: Tensor | float, beta_d: float, beta_min: float) -> Tensor:
    """VP noise level sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) (EDM Table 1), float32 as EDM."""
    t = torch.as_tensor(t, dtype=torch.float32, device=t.device if isinstance(t, Tensor) else "cpu")
    return ((0.5 * beta_d * t**2 + beta_min * t).exp() - 1).sqrt()


def vp_sigma_inv(sigma: Tensor, beta_d: float, beta_min: float) -> Tensor:
    """Inverse of ``vp_sigma``: t = (sqrt(beta_min^2 + 2 beta_d ln(sigma^2 + 1)) - beta_min) / beta_d."""
    return ((beta_min**2 + 2 * beta_d * (1 + sigma**2).log()).sqrt() - beta_min) / beta_d


class VPPrecond(Precond):
    """Variance preserving (Song et al. 2021): c_skip 1, c_out -sigma, c_noise (M-1) sigma^-1(sigma)."""

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        label_dim: int = 0,
        use_fp16: bool = False,
        beta_d: float = 19.9,
        beta_min: float = 0.1,
        M: int = 1000,
        epsilon_t: float = 1e-5,
        model_type: str = "SongUNet",
        **model_kwargs: Any,
    ) -> None:
        init_kwargs = dict(
            img_resolution=img_resolution,
            img_channels=img_channels,
            label_dim=label_dim,
            use_fp16=use_fp16,
            beta_d=beta_d,
            beta_min=beta_min,
            M=M,
            epsilon_t=epsilon_t,
            model_type=model_type,
        )
        super().__init__(
            init_kwargs, img_resolution, img_channels, label_dim, use_fp16, model_type, model_kwargs
        )
        self.beta_d, self.beta_min, self.M, self.epsilon_t = beta_d, beta_min, M, epsilon_t
        self.sigma_min = float(vp_sigma(epsilon_t, beta_d, beta_min))
        self.sigma_max = float(vp_sigma(1.0, beta_d, beta_min))

    def coefficients(self, sigma: Tensor) -> tuple[float, Tensor, Tensor, Tensor]:
        c_in = 1 / (sigma**2 + 1).sqrt()
        c_noise = (self.M - 1) * vp_sigma_inv(sigma, self.beta_d, self.beta_min)
        return 1.0, -sigma, c_in, c_noise


class VEPrecond(Precond):
    """Variance exploding (Song et al. 2021 NCSN++): c_skip 1, c_out sigma, c_in 1, c_noise ln(sigma / 2)."""

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        label_dim: int = 0,
        use_fp16: bool = False,
        sigma_min: float = 0.02,
        sigma_max: float = 100,
        model_type: str = "SongUNet",
        **model_kwargs: Any,
    ) -> None:
        init_kwargs = dict(
            img_resolution=img_resolution,
            img_channels=img_channels,
            label_dim=label_dim,
            use_fp16=use_fp16,
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            model_type=model_type,
        )
        super().__init__(
            init_kwargs, img_resolution, img_channels, label_dim, use_fp16, model_type, model_kwargs
        )
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def coefficients(self, sigma: Tensor) -> tuple[float, Tensor, Tensor, Tensor]:
        return 1.0, sigma, torch.ones_like(sigma), (0.5 * sigma).log()


class iDDPMPrecond(Precond):  # noqa: N801 - EDM's class name, recorded in checkpoints
    """Improved DDPM (Nichol & Dhariwal 2021): discrete sigmas ``u``, c_noise = M - 1 - j; learned variance
    channels (``out_channels = 2 * img_channels``) are dropped."""

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        label_dim: int = 0,
        use_fp16: bool = False,
        C_1: float = 0.001,
        C_2: float = 0.008,
        M: int = 1000,
        model_type: str = "DhariwalUNet",
        **model_kwargs: Any,
    ) -> None:
        init_kwargs = dict(
            img_resolution=img_resolution,
            img_channels=img_channels,
            label_dim=label_dim,
            use_fp16=use_fp16,
            C_1=C_1,
            C_2=C_2,
            M=M,
            model_type=model_type,
        )
        super().__init__(
            init_kwargs,
            img_resolution,
            img_channels,
            label_dim,
            use_fp16,
            model_type,
            model_kwargs,
            out_channels=2 * img_channels,
        )
        self.C_1, self.C_2, self.M = C_1, C_2, M
        # EDM builds this table in float32 arithmetic; released files carry their own copy (loaded strictly)
        with torch.device("cpu"):  # real values even when the module is built on the meta device
            self.register_buffer("u", iddpm_table(C_1, C_2, M).to(torch.float32))

    @property
    def sigma_min(self) -> float:
        """u_{M-1}, read from the (possibly loaded) table."""
        return float(self.u[self.M - 1])

    @property
    def sigma_max(self) -> float:
        return float(self.u[0])

    def sigma_index(self, sigma: Tensor | float) -> Tensor:
        """Index j of the nearest u_j (float32 distances, as EDM)."""
        sigma = torch.as_tensor(sigma)
        flat = sigma.to(device=self.u.device, dtype=torch.float32).reshape(-1, 1)
        return (flat - self.u.reshape(1, -1)).abs().argmin(dim=1).reshape(sigma.shape).to(sigma.device)

    def round_sigma(self, sigma: Tensor | float) -> Tensor:
        sigma = torch.as_tensor(sigma)
        return self.u[self.sigma_index(sigma).to(self.u.device)].to(device=sigma.device, dtype=sigma.dtype)

    def coefficients(self, sigma: Tensor) -> tuple[float, Tensor, Tensor, Tensor]:
        c_in = 1 / (sigma**2 + 1).sqrt()
        c_noise = (self.M - 1 - self.sigma_index(sigma)).to(torch.float32)
        return 1.0, -sigma, c_in, c_noise


class EDMPrecond(Precond):
    """EDM (Karras et al. 2022, Eq. 7): c_skip = s_d^2/(s^2+s_d^2), c_out = s s_d/sqrt(s^2+s_d^2),
    c_in = 1/sqrt(s^2+s_d^2), c_noise = ln(s)/4."""

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        label_dim: int = 0,
        use_fp16: bool = False,
        sigma_min: float = 0,
        sigma_max: float = float("inf"),
        sigma_data: float = 0.5,
        model_type: str = "DhariwalUNet",
        **model_kwargs: Any,
    ) -> None:
        init_kwargs = dict(
            img_resolution=img_resolution,
            img_channels=img_channels,
            label_dim=label_dim,
            use_fp16=use_fp16,
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            sigma_data=sigma_data,
            model_type=model_type,
        )
        super().__init__(
            init_kwargs, img_resolution, img_channels, label_dim, use_fp16, model_type, model_kwargs
        )
        self.sigma_min, self.sigma_max, self.sigma_data = (
            float(sigma_min),
            float(sigma_max),
            float(sigma_data),
        )

    def coefficients(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sd**2 + sigma**2).sqrt()
        return c_skip, c_out, c_in, sigma.log() / 4


PRECONDITIONERS: dict[str, type[Precond]] = {
    cls.__name__: cls for cls in (VPPrecond, VEPrecond, iDDPMPrecond, EDMPrecond)
}


def preconditioners() -> dict[str, type[Precond]]:
    """Recorded class name -> class, EDM (``training/networks.py``) and EDM2 (``Precond``)."""
    from edmbench.denoisers.edm2 import EDM2Precond  # imported here: edm2 builds on this module

    return {**PRECONDITIONERS, EDM2Precond.edm_class_name: EDM2Precond}


def build_precond(class_name: str, init_kwargs: dict[str, Any]) -> Precond:
    """Rebuild a preconditioner + backbone from its recorded class name and constructor keywords."""
    classes = preconditioners()
    if class_name not in classes:
        raise ValueError(f"unknown preconditioner {class_name!r}; valid: {', '.join(classes)}")
    return classes[class_name](**init_kwargs)
