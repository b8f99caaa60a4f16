"""Metrics: feature extractors (torch-fidelity registry), float64 streaming statistics, FID/KID/PR, reference
statistics and error bars. Names load lazily so ``import edmbench.metrics`` stays light."""

from __future__ import annotations

from edmbench._lazy import lazy_getattr

_LAZY = {
    "StreamingStats": "edmbench.metrics.stats",
    "ReferenceStats": "edmbench.metrics.stats",
    "load_reference": "edmbench.metrics.stats",
    "save_reference": "edmbench.metrics.stats",
    "get_extractor": "edmbench.metrics.features",
    "check_extractor_available": "edmbench.metrics.features",
    "extract_features": "edmbench.metrics.features",
    "extractor_names": "edmbench.metrics.features",
    "register_extractor": "edmbench.metrics.features",
    "MissingWeightsError": "edmbench.metrics.features",
    "frechet_distance": "edmbench.metrics.fid",
    "fid_at_rungs": "edmbench.metrics.fid",
    "FIDStream": "edmbench.metrics.fid",
    "RungResult": "edmbench.metrics.fid",
    "KIDPROptions": "edmbench.metrics.kid_pr",
    "compute_reference": "edmbench.metrics.reference",
    "reference_for_dataset": "edmbench.metrics.reference",
    "iter_dataset_images": "edmbench.metrics.reference",
    "evaluate_fid": "edmbench.metrics.evaluate",
    "edm_protocol": "edmbench.metrics.evaluate",
    "FIDResult": "edmbench.metrics.evaluate",
    "ProtocolResult": "edmbench.metrics.evaluate",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
