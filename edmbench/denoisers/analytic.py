"""Analytic oracles with exact D(x; sigma): isotropic Gaussian data and a Gaussian mixture.

For data x0 ~ sum_k w_k N(mu_k, S_k) and x = x0 + sigma * n, the ideal denoiser is the posterior mean
(EDM Eq. 3 minimiser):

    D(x; sigma) = sum_k r_k(x) [mu_k + S_k (S_k + sigma^2 I)^-1 (x - mu_k)],
    r_k(x) ∝ w_k N(x; mu_k, S_k + sigma^2 I).

Each S_k = U_k diag(lam_k) U_k^T is eigendecomposed once, so every evaluation is stable for any
sigma >= 0 (no matrix inverse; log-sum-exp responsibilities). Work is float64; output is float32 per the
Denoiser contract unless ``out_dtype=torch.float64`` is asked for (high-accuracy oracle tests).
Products are written as broadcast multiply-and-sum so a sample's result never depends on its batch-mates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from edmbench.denoisers.base import as_sigma_tensor

_NPZ_REQUIRED = {"weights", "means", "covs", "image_shape"}
_NPZ_OPTIONAL = {"component_classes"}
MAX_MIXTURE_DIM = 4096  # D = C*H*W of a full-covariance mixture read from a file (32x32x3 = 3072 fits)
MAX_MIXTURE_BYTES = 1 << 30  # declared size of a mixture .npz


def _check_image_shape(image_shape: Sequence[int], dim: int) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1 or math.prod(shape) != dim:
        raise ValueError(f"image_shape must be (C, H, W) with C*H*W == {dim}, got {tuple(image_shape)}")
    return shape  # type: ignore[return-value]


class GaussianDenoiser:
    """Exact D for isotropic Gaussian data N(mean, std^2 I): D = mean + std^2/(std^2+sigma^2) (x - mean)."""

    sigma_min = 0.0
    sigma_max = math.inf
    label_dim = 0

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 1, 2),
        mean: float | Tensor = 0.0,
        std: float = 0.5,
        out_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.image_shape = _check_image_shape(image_shape, math.prod(image_shape))
        if not (std > 0 and math.isfinite(std)):
            raise ValueError(f"std must be positive and finite, got {std}")
        self.mean = torch.as_tensor(mean, dtype=torch.float64).expand(self.image_shape).clone()
        if not torch.isfinite(self.mean).all():
            raise ValueError("mean must be finite")
        self.std = float(std)
        self.out_dtype = out_dtype

    def round_sigma(self, sigma: Tensor | float) -> Tensor:
        return torch.as_tensor(sigma, dtype=torch.float64)

    def __call__(self, x: Tensor, sigma: Tensor | float, class_labels: Tensor | None = None) -> Tensor:
        s = as_sigma_tensor(sigma, x)
        mean = self.mean.to(x.device)
        gain = self.std**2 / (self.std**2 + s**2)
        return (mean + gain * (x.to(torch.float64) - mean)).to(self.out_dtype)


class GaussianMixtureDenoiser:
    """Exact posterior-mean denoiser for a Gaussian mixture with full covariances.

    ``weights [K]``, ``means [K, D]``, ``covs [K, D, D]`` (symmetric positive definite), D = C*H*W.
    Class-conditional: ``component_classes [K]`` gives each component's class in ``[0, label_dim)``;
    with one-hot ``class_labels`` the mixture is restricted to that class's components (weights
    renormalised), without labels the full mixture is used.
    """

    sigma_min = 0.0
    sigma_max = math.inf

    def __init__(
        self,
        weights: Sequence[float] | Tensor,
        means: Tensor | np.ndarray,
        covs: Tensor | np.ndarray,
        image_shape: Sequence[int] | None = None,
        component_classes: Sequence[int] | None = None,
        out_dtype: torch.dtype = torch.float32,
    ) -> None:
        w = torch.as_tensor(np.asarray(weights), dtype=torch.float64)
        mu = torch.as_tensor(np.asarray(means), dtype=torch.float64)
        cov = torch.as_tensor(np.asarray(covs), dtype=torch.float64)
        _validate_mixture(w, mu, cov)
        self.weights, self.means, self.covs = w / w.sum(), mu, cov
        self.image_shape = _check_image_shape(image_shape or (1, 1, mu.shape[1]), mu.shape[1])
        self.component_classes, self.label_dim = _validate_classes(component_classes, w.shape[0])
        lam, vec = torch.linalg.eigh(cov)
        if not (lam > 0).all():
            raise ValueError(
                "covs must be positive definite (smallest eigenvalue "
                f"{lam.min().item():.3g}); add a small diagonal term"
            )
        self._lam, self._vec_t = lam, vec.transpose(1, 2).contiguous()  # rows of U_k^T
        self.out_dtype = out_dtype

    def round_sigma(self, sigma: Tensor | float) -> Tensor:
        return torch.as_tensor(sigma, dtype=torch.float64)

    def __call__(self, x: Tensor, sigma: Tensor | float, class_labels: Tensor | None = None) -> Tensor:
        B = x.shape[0]
        flat = x.to(torch.float64).reshape(B, -1)
        if flat.shape[1] != self.means.shape[1]:
            raise ValueError(
                f"x has {flat.shape[1]} values per sample, the mixture has {self.means.shape[1]}"
            )
        s2 = as_sigma_tensor(sigma, flat) ** 2  # [B, 1]
        logits, posts = [], []
        for k in range(self.means.shape[0]):
            lam, vt, mu = (t.to(x.device) for t in (self._lam[k], self._vec_t[k], self.means[k]))
            z = ((flat - mu)[:, None, :] * vt).sum(-1)  # U_k^T (x - mu_k), [B, D]
            var = lam + s2  # eigenvalues of S_k + sigma^2 I
            logits.append(-0.5 * ((z * z / var).sum(-1) + torch.log(var).sum(-1)))
            shrunk = z * (lam / var)
            posts.append(mu + (shrunk[:, :, None] * vt).sum(-2))  # mu_k + U_k diag(.) z
        logits_t = torch.stack(logits, 1) + torch.log(self.weights).to(x.device)
        logits_t = logits_t + self._class_mask(class_labels, B, x.device)
        resp = torch.softmax(logits_t, dim=1)  # log-sum-exp normalised responsibilities
        out = (resp[:, :, None] * torch.stack(posts, 1)).sum(1)
        return out.reshape(x.shape).to(self.out_dtype)

    def _class_mask(self, class_labels: Tensor | None, batch: int, device: torch.device) -> Tensor:
        if class_labels is None or self.label_dim == 0:
            return torch.zeros(batch, self.means.shape[0], dtype=torch.float64, device=device)
        if class_labels.shape != (batch, self.label_dim):
            raise ValueError(
                f"class_labels must have shape [{batch}, {self.label_dim}], got {tuple(class_labels.shape)}"
            )
        member = class_labels.to(torch.float64)[:, self.component_classes.to(device)]  # [B, K]
        if not (member.sum(1) > 0).all():
            raise ValueError("class_labels selects a class with no mixture component")
        return torch.log(member)

    def sample_data(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw n data samples x0 (float64, ``[n, C, H, W]``); for tests and reference statistics."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], dtype=torch.float64, generator=generator)
        chol = torch.linalg.cholesky(self.covs)[comp]
        x0 = self.means[comp] + (chol @ eps[:, :, None])[:, :, 0]
        return x0.reshape(n, *self.image_shape)

    def save_npz(self, path: str | Path) -> None:
        """Write the mixture as an ``.npz`` (no pickles) that :meth:`from_npz` reads back exactly."""
        arrays = {
            "weights": self.weights.numpy(),
            "means": self.means.numpy(),
            "covs": self.covs.numpy(),
            "image_shape": np.asarray(self.image_shape, dtype=np.int64),
        }
        if self.label_dim > 0:
            arrays["component_classes"] = self.component_classes.numpy()
        np.savez(Path(path), **arrays)

    @classmethod
    def from_npz(cls, path: str | Path, out_dtype: torch.dtype = torch.float32) -> GaussianMixtureDenoiser:
        """Load and validate a mixture written by :meth:`save_npz` (bounded: ``edmbench.npzio.read_npz``).

        Refusals are ``CheckpointError``s naming the file: keys, dtypes (float arrays; integer
        ``image_shape`` and ``component_classes``), shapes consistent with K components of dimension
        D <= ``MAX_MIXTURE_DIM``, and the values checked by the constructor.
        """
        from edmbench.errors import CheckpointError, env_int
        from edmbench.npzio import read_npz

        limit = env_int("EDMBENCH_MAX_NPZ_BYTES", MAX_MIXTURE_BYTES)
        arrays = read_npz(path, "Gaussian-mixture", max_bytes=limit)
        keys = set(arrays)
        if not keys >= _NPZ_REQUIRED or not keys <= _NPZ_REQUIRED | _NPZ_OPTIONAL:
            raise CheckpointError(
                f"{path}: a Gaussian-mixture .npz needs keys {sorted(_NPZ_REQUIRED)} "
                f"(optional {sorted(_NPZ_OPTIONAL)}), found {sorted(keys)[:10]}"
            )
        for key in ("weights", "means", "covs"):
            if arrays[key].dtype.kind != "f":
                raise CheckpointError(f"{path}: '{key}' must be a float array, got dtype {arrays[key].dtype}")
        for key in ("image_shape", "component_classes"):
            if key in arrays and arrays[key].dtype.kind not in "iu":
                raise CheckpointError(
                    f"{path}: '{key}' must be an integer array, got dtype {arrays[key].dtype}"
                )
        means = arrays["means"]
        if means.ndim != 2 or not 1 <= means.shape[1] <= MAX_MIXTURE_DIM:
            raise CheckpointError(f"{path}: 'means' must be [K, D] with 1 <= D <= {MAX_MIXTURE_DIM}, "
                                  f"got shape {means.shape}")
        if arrays["image_shape"].shape != (3,):
            raise CheckpointError(f"{path}: 'image_shape' must hold 3 integers (C, H, W)")
        try:
            return cls(
                arrays["weights"],
                means,
                arrays["covs"],
                image_shape=arrays["image_shape"].tolist(),
                component_classes=arrays.get("component_classes"),
                out_dtype=out_dtype,
            )
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}") from None


def _validate_mixture(w: Tensor, mu: Tensor, cov: Tensor) -> None:
    if w.ndim != 1 or w.numel() == 0:
        raise ValueError(f"weights must have shape [K] with K >= 1, got {tuple(w.shape)}")
    K = w.shape[0]
    if mu.ndim != 2 or mu.shape[0] != K:
        raise ValueError(f"means must have shape [K={K}, D], got {tuple(mu.shape)}")
    D = mu.shape[1]
    if cov.shape != (K, D, D):
        raise ValueError(f"covs must have shape [K={K}, D={D}, D={D}], got {tuple(cov.shape)}")
    for name, t in (("weights", w), ("means", mu), ("covs", cov)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or inf")
    if not (w > 0).all():
        raise ValueError("weights must all be positive")
    if not torch.allclose(cov, cov.transpose(1, 2), rtol=1e-10, atol=1e-12):
        raise ValueError("covs must be symmetric")


def _validate_classes(component_classes: Sequence[int] | None, K: int) -> tuple[Tensor, int]:
    if component_classes is None:
        return torch.zeros(K, dtype=torch.long), 0
    cls = torch.as_tensor(np.asarray(component_classes))
    if cls.shape != (K,) or cls.dtype.is_floating_point or (cls < 0).any() or (cls >= K).any():
        raise ValueError(
            f"component_classes must be {K} integers in [0, {K}), one per component (a larger class index "
            "leaves some class without a component)"
        )
    label_dim = int(cls.max()) + 1
    missing = sorted(set(range(label_dim)) - set(cls.tolist()))
    if missing:
        raise ValueError(f"component_classes leaves classes {missing} without a component")
    return cls.long(), label_dim
