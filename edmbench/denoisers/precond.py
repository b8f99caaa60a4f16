"""EDM's four preconditioners: D(x; sigma) = c_skip x + c_out F(c_in x; c_noise) (EDM Eq. 7, Table 1).

``VPPrecond``, ``VEPrecond``, ``iDDPMPrecond`` and ``EDMPrecond`` take EDM's constructor arguments and hold
the backbone as ``model`` (state-dict prefix ``model.``). They satisfy ``edmbench.denoisers.base.Denoiser``;
``forward`` also keeps EDM's ``force_fp32`` and extra backbone keywords (e.g. ``augment_labels``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from edmbench.denoisers.iddpm import iddpm_u
from edmbench.denoisers.precond_base import Precond, as_sigma


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
        # EDM's networks.py builds this table in float32 arithmetic (``iddpm_u``); released files carry
        # their own copy (loaded strictly)
        with torch.device("cpu"):  # real values even when the module is built on the meta device
            self.register_buffer("u", iddpm_u(C_1, C_2, M, dtype=torch.float32))

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
        """The nearest u_j, in sigma's dtype (float64 for Python numbers)."""
        sigma = as_sigma(sigma)
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
