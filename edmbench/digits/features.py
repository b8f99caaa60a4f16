"""The ``digits-classifier`` torch-fidelity feature extractor: FID-digits features (registered on import).

Importing this module registers the name with torch-fidelity once (re-imports are harmless). The extractor
takes uint8 ``[B, 3, 8, 8]`` (or ``[B, 1, 8, 8]``) images, averages the colour channels (greyscale digits are
replicated to three channels by torch-fidelity), maps them to [-1, 1] exactly as the classifier saw them in
training, and returns ``(features_64, logits)`` in the requested order. ``"64"`` is the penultimate layer and
the default layer for FID, KID and PRC; ``"logits"`` the default for ISC.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from edmbench.digits.classifier import load_classifier
from edmbench.digits.data import from_uint8
from edmbench.metrics.features import register_extractor
from edmbench.pretrained import PRETRAINED_DIR

EXTRACTOR_NAME = "digits-classifier"
DEFAULT_WEIGHTS = PRETRAINED_DIR / "digits-classifier.safetensors"
FEATURES = ("64", "logits")


class DigitsClassifierExtractor(FeatureExtractorBase):
    """torch-fidelity extractor over the shipped digits classifier (``feature_extractor_weights_path`` to
    override the weights file)."""

    def __init__(self, name: str, features_list: list[str] | tuple[str, ...], **kwargs) -> None:
        super().__init__(name, features_list)
        weights = kwargs.get("feature_extractor_weights_path") or DEFAULT_WEIGHTS
        self.classifier, self.provenance = load_classifier(weights)
        self.requires_grad_(False)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return FEATURES

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "64", "kid": "64", "prc": "64"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        grey = to_grey(x)
        self.classifier.eval()
        feats = self.classifier.features(grey)
        out = {"64": feats, "logits": self.classifier.head(feats)}
        return tuple(out[name].to(torch.float32) for name in self.features_list)


def to_grey(x: Tensor) -> Tensor:
    """uint8 ``[B, 1|3, 8, 8]`` -> float32 ``[B, 1, 8, 8]`` in [-1, 1] (channel mean for three channels)."""
    if x.dtype != torch.uint8:
        raise ValueError(f"{EXTRACTOR_NAME} expects uint8 images, got {x.dtype}")
    if x.ndim != 4 or x.shape[1] not in (1, 3) or tuple(x.shape[2:]) != (8, 8):
        raise ValueError(f"{EXTRACTOR_NAME} expects [B, 1 or 3, 8, 8] images (no resizing), "
                         f"got {tuple(x.shape)}")
    grey = from_uint8(x)
    return grey.mean(dim=1, keepdim=True) if grey.shape[1] == 3 else grey


register_extractor(EXTRACTOR_NAME, DigitsClassifierExtractor)  # no-op when already registered


def reference_stats(images: Tensor, extractor: torch.nn.Module | None = None, provenance: dict | None = None,
                    keep_features: bool = True):
    """FID-digits ``ReferenceStats`` (float64 mu, sigma; feature rows kept for KID/PR) of uint8 images."""
    from edmbench.metrics.features import extract_features, get_extractor
    from edmbench.metrics.stats import ReferenceStats, StreamingStats

    extractor = extractor or get_extractor(EXTRACTOR_NAME)
    features = torch.cat([extract_features(extractor, batch) for batch in images.split(512)])
    stats = StreamingStats().update(features)
    rows = features.numpy() if keep_features else None
    return ReferenceStats(stats.mean, stats.cov, n=stats.n, features=rows, provenance=dict(provenance or {}))

