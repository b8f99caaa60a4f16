"""edmbench: find and benchmark the best sampler settings for EDM-style diffusion models.

``import edmbench`` stays light: heavy pieces (optuna, matplotlib, torch-fidelity, networks) load lazily.
"""

from __future__ import annotations

from edmbench._lazy import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _LAZY)
