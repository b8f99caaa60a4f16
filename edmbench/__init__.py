"""edmbench: find and benchmark the best sampler settings for EDM-style diffusion models.

``import edmbench`` stays light: heavy pieces (optuna, matplotlib, torch-fidelity, networks) load lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "load": "edmbench.pretrained",
    "SamplerConfig": "edmbench.sampling",
    "sample": "edmbench.sampling",
    "NoiseSource": "edmbench.sampling.noise",
    "Denoiser": "edmbench.denoisers.base",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edmbench' has no attribute {name!r}")
