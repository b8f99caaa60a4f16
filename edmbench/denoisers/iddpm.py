"""The iDDPM noise-level table u_0 > u_1 > ... > u_M = 0 (Nichol & Dhariwal 2021; EDM Table 1).

u_M = 0 and u_{j-1} = sqrt((u_j^2 + 1) / max(abar(j-1) / abar(j), C_1) - 1),
with abar(j) = sin^2(pi j / (2 M (C_2 + 1))).

The table is a fact of the model, so it lives here; the sampling layer's ``iddpm`` discretisation reads it
from this module. Its float32/float64 arithmetic is part of the fact: the small end of the table amplifies
one float32 ulp of the ratio into ~1e-3 relative in u, so we do exactly what NVIDIA's EDM code does.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

IDDPM_C1, IDDPM_C2, IDDPM_M = 0.001, 0.008, 1000  # EDM's defaults (iDDPMPrecond and generate.py)


def alpha_bar_ratios(c1: float = IDDPM_C1, c2: float = IDDPM_C2, m: int = IDDPM_M) -> Tensor:
    """float32 ``[m]``: entry j-1 is max(abar(j-1) / abar(j), C_1) for j = 1..m, in EDM's float32 arithmetic.

    As in EDM (``j`` an integer tensor, Python-float constants): the argument ((pi/2) * j) / m / (C_2 + 1)
    is three float32 operations with float32-rounded constants, then torch's float32 ``sin``, the square,
    the ratio and the clip at float32(C_1) are float32 as well.
    """
    j = torch.arange(m + 1, device="cpu")
    abar = (0.5 * math.pi * j / m / (c2 + 1)).sin() ** 2
    return (abar[:-1] / abar[1:]).clip(min=c1)


def iddpm_u(c1: float = IDDPM_C1, c2: float = IDDPM_C2, m: int = IDDPM_M,
            dtype: torch.dtype = torch.float64) -> Tensor:
    """The table ``[m + 1]`` (u_m = 0), CPU.

    ``dtype=torch.float64``: EDM ``generate.py``'s ablation sampler (the ``iddpm`` discretisation): the
    ratios are float32 (``alpha_bar_ratios``), only the recursion for u is float64 (u_j^2 + 1, the division
    by the float32 ratio promoted to float64, - 1 and sqrt). ``dtype=torch.float32``: EDM's
    ``iDDPMPrecond`` (``training/networks.py``), where the recursion is float32 too.
    """
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return _table(float(c1), float(c2), int(m), dtype).clone()


@lru_cache(maxsize=8)
def _table(c1: float, c2: float, m: int, dtype: torch.dtype) -> Tensor:
    ratios = alpha_bar_ratios(c1, c2, m)
    u = torch.zeros(m + 1, dtype=dtype)
    for j in range(m, 0, -1):  # 0-dim tensor arithmetic, as EDM: float64 u / float32 ratio is float64
        u[j - 1] = ((u[j] ** 2 + 1) / ratios[j - 1] - 1).sqrt()
    return u
