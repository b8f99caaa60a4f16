"""Per-image randomness: one generator per seed, so image i depends only on seed i (EDM generate.py)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class NoiseSource:
    """A stack of independent ``torch.Generator``s, one per image seed (seed mod 2**32).

    Every draw returns ``[B, *shape]`` with row i drawn from seed i's generator, so results never depend
    on batch composition. Draw order per seed (EDM): latents, then class labels, then per-step noise.
    ``device`` is where the generators live: ``"cpu"`` (default; CPU and GPU runs see the same noise) or
    ``"cuda"`` to reproduce images made by NVIDIA's ``generate.py`` on a GPU.
    """

    def __init__(self, seeds: Sequence[int], device: str | torch.device = "cpu") -> None:
        if len(seeds) == 0:
            raise ValueError("NoiseSource needs at least one seed")
        self.seeds = [int(s) for s in seeds]
        self.device = torch.device(device)
        self._generators = [torch.Generator(self.device).manual_seed(s % (1 << 32)) for s in self.seeds]

    def __len__(self) -> int:
        return len(self.seeds)

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32,
              device: str | torch.device | None = None) -> Tensor:
        """Standard normal draws ``[B, *shape]``, one row per seed."""
        rows = [torch.randn(tuple(shape), generator=g, dtype=dtype, device=self.device)
                for g in self._generators]
        return torch.stack(rows).to(device if device is not None else self.device)

    def randn_like(self, x: Tensor) -> Tensor:
        """Normal draws with ``x``'s per-sample shape, dtype and device (EDM: step noise in x's dtype)."""
        if x.shape[0] != len(self):
            raise ValueError(f"batch of {x.shape[0]} does not match {len(self)} seeds")
        return self.randn(x.shape[1:], dtype=x.dtype, device=x.device)

    def randint(self, high: int, device: str | torch.device | None = None) -> Tensor:
        """One integer in ``[0, high)`` per seed, shape ``[B]``."""
        rows = [torch.randint(high, (1,), generator=g, device=self.device) for g in self._generators]
        return torch.cat(rows).to(device if device is not None else self.device)

    def latents(self, image_shape: Sequence[int], device: str | torch.device | None = None) -> Tensor:
        """Initial unit-variance noise, float32 ``[B, C, H, W]`` (the sampler scales it by sigmas[0])."""
        return self.randn(image_shape, dtype=torch.float32, device=device)

    def class_labels(self, label_dim: int, device: str | torch.device | None = None) -> Tensor | None:
        """Random one-hot labels ``[B, label_dim]`` (float32), or ``None`` for unconditional models."""
        if label_dim <= 0:
            return None
        idx = self.randint(label_dim, device=device)
        return torch.nn.functional.one_hot(idx, label_dim).to(torch.float32)
